// graphinv Neo4j schema: uniqueness constraints (created before any load) and
// indexes. Generated from graphinv/stores/cypher.py; tests check they agree.
CREATE CONSTRAINT account_id IF NOT EXISTS FOR (n:Account) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT payment_method_id IF NOT EXISTS FOR (n:PaymentMethod) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT ip_id IF NOT EXISTS FOR (n:IP) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT prompt_fingerprint_id IF NOT EXISTS FOR (n:PromptFingerprint) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT identifier_kind_id IF NOT EXISTS FOR (n:Identifier) REQUIRE (n.kind, n.id) IS UNIQUE;
CREATE CONSTRAINT usage_account_model IF NOT EXISTS FOR (n:Usage) REQUIRE (n.account_id, n.model) IS UNIQUE;
CREATE CONSTRAINT sweep_id IF NOT EXISTS FOR (n:Sweep) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT ring_sweep_id IF NOT EXISTS FOR (n:Ring) REQUIRE (n.sweep_id, n.id) IS UNIQUE;
CREATE CONSTRAINT campaign_sweep_id IF NOT EXISTS FOR (n:Campaign) REQUIRE (n.sweep_id, n.id) IS UNIQUE;
CREATE CONSTRAINT ground_truth_account IF NOT EXISTS FOR (n:GroundTruth) REQUIRE n.account_id IS UNIQUE;
CREATE CONSTRAINT graphinv_meta_key IF NOT EXISTS FOR (n:GraphinvMeta) REQUIRE n.key IS UNIQUE;
CREATE CONSTRAINT graphinv_lock_name IF NOT EXISTS FOR (n:GraphinvLock) REQUIRE n.name IS UNIQUE;
CREATE INDEX ring_id IF NOT EXISTS FOR (n:Ring) ON (n.id);
CREATE INDEX ring_rank IF NOT EXISTS FOR (n:Ring) ON (n.rank);
CREATE INDEX identifier_kind IF NOT EXISTS FOR (n:Identifier) ON (n.kind);
CREATE INDEX decision_ring IF NOT EXISTS FOR (n:Decision) ON (n.ring_id);
