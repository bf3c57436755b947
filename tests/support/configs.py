"""Config pieces the integration tests share."""

# an agent that reads only its targets: no NVML, no host, no process discovery
TARGETS_ONLY = '''
[collectors.nvml]
enabled = false
[collectors.host]
enabled = false
[discovery]
enabled = false
'''
