"""Prometheus' remote write messages (prompb's WriteRequest) built at run time with the protobuf
library, from the field numbers of the remote write 1.0 specification: the tests read what the
agent's hand encoder writes with the real protobuf decoder, and the benchmark times the library
encoding the same batch."""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
MESSAGES = {  # name -> [(field, number, type, repeated, message type)]
    "Label": [("name", 1, F.TYPE_STRING, False, ""), ("value", 2, F.TYPE_STRING, False, "")],
    "Sample": [("value", 1, F.TYPE_DOUBLE, False, ""), ("timestamp", 2, F.TYPE_INT64, False, "")],
    "TimeSeries": [("labels", 1, F.TYPE_MESSAGE, True, ".prometheus.Label"),
                   ("samples", 2, F.TYPE_MESSAGE, True, ".prometheus.Sample")],
    "MetricMetadata": [("type", 1, F.TYPE_INT32, False, ""), ("metric_family_name", 2, F.TYPE_STRING, False, ""),
                       ("help", 4, F.TYPE_STRING, False, ""), ("unit", 5, F.TYPE_STRING, False, "")],
    "WriteRequest": [("timeseries", 1, F.TYPE_MESSAGE, True, ".prometheus.TimeSeries"),
                     ("metadata", 3, F.TYPE_MESSAGE, True, ".prometheus.MetricMetadata")],
}


def write_request_class():
    proto = descriptor_pb2.FileDescriptorProto(name="remote_write_test.proto", package="prometheus", syntax="proto3")
    for name, fields in MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field, number, kind, repeated, type_name in fields:
            f = message.field.add(name=field, number=number, type=kind,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))
