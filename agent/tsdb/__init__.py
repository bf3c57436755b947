"""The on-disk history: every series served on /metrics, kept in tiers (raw, 1-minute and
1-hour rollups) in one SQLite file in the state directory. `codec` packs chunks, `rollup`
summarises them, `store` owns the file and writes each cycle, `seal` turns the head into chunks
in the background, `reader` reads from any thread, `query` answers PromQL over it, `recorder`
is its place in the agent's cycle."""
