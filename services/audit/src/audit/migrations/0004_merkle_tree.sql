-- The ledger as an RFC 9162 Merkle tree (audit.merkle), its signed heads and their witnesses'
-- cosignatures. Append-only like the ledger: the refusal function of 0001 guards them too.
-- The tree over entries recorded before this migration is built, after their chain verified,
-- by audit itself (audit.tree.ensure_tree: at its start, or `rujuk audit migrate-tree`).

-- Every complete subtree, once complete: node (level, node_index) covers the leaves (entries
-- seq - 1) [node_index * 2^level, (node_index + 1) * 2^level). Level 0: SHA-256(0x00 || the
-- entry's canonical body). A proof at any size reads some log2(size) of these by key.
CREATE TABLE tree_nodes (
    level       smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    node_index  bigint NOT NULL CHECK (node_index >= 0),
    hash        bytea NOT NULL CHECK (octet_length(hash) = 32),
    -- The hash rides in the index: a proof's lookups are index-only scans, no heap page each.
    PRIMARY KEY (level, node_index) INCLUDE (hash)
);

COMMENT ON TABLE tree_nodes IS
    'Complete subtrees of the ledger''s RFC 9162 Merkle tree (leaf = SHA-256(0x00 || body))';

-- Signed tree heads: the C2SP checkpoint (origin, size, root) as a signed note, signed by
-- audit's key (Ed25519, and a timestamped cosignature/v1 giving signed_at).
CREATE TABLE tree_heads (
    size        bigint PRIMARY KEY CHECK (size >= 1),
    root_hash   bytea NOT NULL CHECK (octet_length(root_hash) = 32),
    signed_at   timestamptz NOT NULL,
    origin      text NOT NULL,
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),
    note        text NOT NULL
);

-- Witnesses' cosignatures of a head (c2sp.org/tlog-cosignature), one signature line each.
CREATE TABLE cosignatures (
    size         bigint NOT NULL REFERENCES tree_heads (size),
    witness      text NOT NULL,
    key_id       bytea NOT NULL CHECK (octet_length(key_id) = 4),
    cosigned_at  timestamptz NOT NULL,
    line         text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, witness, key_id)
);

CREATE TRIGGER tree_nodes_refuse_update_delete
    BEFORE UPDATE OR DELETE ON tree_nodes FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER tree_nodes_refuse_truncate
    BEFORE TRUNCATE ON tree_nodes FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER tree_heads_refuse_update_delete
    BEFORE UPDATE OR DELETE ON tree_heads FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER tree_heads_refuse_truncate
    BEFORE TRUNCATE ON tree_heads FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER cosignatures_refuse_update_delete
    BEFORE UPDATE OR DELETE ON cosignatures FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER cosignatures_refuse_truncate
    BEFORE TRUNCATE ON cosignatures FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
