"""The on-disk history: every series served on /metrics, kept in tiers (raw, 1-minute and
1-hour rollups) in one SQLite file in the state directory. `codec` packs chunks, `rollup`
summarises them, `store` owns the file, `query` answers PromQL over it."""
