-- Why a step missed the cache, as the agent that ran it explained it from its cache's history:
-- a kind (`inputs`, `command`, `new`, ... see lanes_core::explain::MissKind) and one line.
ALTER TABLE steps ADD COLUMN miss_kind TEXT;
ALTER TABLE steps ADD COLUMN miss_detail TEXT;
