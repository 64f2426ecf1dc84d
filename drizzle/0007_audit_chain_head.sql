-- The audit chain's one state row: an empty chain whose head and anchor are
-- the genesis hash (64 zeros), so the first audit row links to it.
INSERT INTO "audit_chain" ("id", "head_id", "head_hash", "anchor_id", "anchor_hash")
VALUES (1, 0, repeat('0', 64), 0, repeat('0', 64))
ON CONFLICT ("id") DO NOTHING;
