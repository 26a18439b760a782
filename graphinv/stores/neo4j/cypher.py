"""Every Cypher statement graphinv's stores run, in one place.

Values always travel as parameters (``$rows``, ``$sweep_id``, …), never in the query text.
Labels and relationship types cannot be parameters in Cypher, so the few statements that
vary by link kind are built from the allow-lists below, and :func:`graph_of` refuses any
label or type not on them. Batches are ``UNWIND $rows AS r`` over lists (not maps):
positional rows pack smaller over Bolt than repeating every key in every row. Node writes
return each node's element id, so relationship batches find both ends by id
(``NodeByElementIdSeek``) instead of a unique-index seek per row.

Timestamps travel as integer microseconds since the Unix epoch and are stored as Neo4j
``DATETIME`` values (UTC); usage hours are stored as integer hours since the epoch.

Graph model (docs/stores.md)::

    (:Account {id, created_at, email_domain, …})
    (:GroundTruth {account_id, ring_id, kind, campaign_id, traits})  -- labels, unlinked
    (:Account)-[:PAID_WITH|CONNECTED_FROM|SENT|USES {first_seen, last_seen, count}]->
        (:PaymentMethod|IP|PromptFingerprint {id, …}) / (:Identifier {kind, id})
    (:Account)-[:HAS_USAGE]->(:Usage {account_id, model, hours[], requests[],
        input_tokens[], output_tokens[]})
    (:Account)-[:IN_RING]->(:Ring {sweep_id, id, size, score, rank, explanation,
        campaign_id, features (JSON), f_<name>…, flagged, status, predecessors[],
        lineage_evidence, density})-[:FOUND_IN]->(:Sweep {id, at, params})
    (:Ring)-[:PART_OF]->(:Campaign {sweep_id, id, n_rings, size})
    (:Ring {sweep_id: now})-[:CONTINUES {status, shared_members, member_jaccard,
        shared_identifiers, infra_overlap}]->(:Ring {sweep_id: the sweep before})

Ring and Campaign nodes are keyed on ``(sweep_id, id)``, so lineage can keep a ring id
across sweeps while each sweep keeps its own node.

Examples
--------
>>> graph_of("ip"), graph_of("device")
(('IP', 'CONNECTED_FROM'), ('Identifier', 'USES'))
>>> print(link_query("ip", create=False).splitlines()[2])
MATCH (t:IP) WHERE elementId(t) = r[1]
"""

from __future__ import annotations

from graphinv.schema import CORE_LINK_KINDS, TABLES

# -- allow-lists ------------------------------------------------------------------------

KIND_GRAPH: dict[str, tuple[str, str]] = {
    "payment_method": ("PaymentMethod", "PAID_WITH"),
    "ip": ("IP", "CONNECTED_FROM"),
    "prompt_fingerprint": ("PromptFingerprint", "SENT"),
}
GENERIC_GRAPH = ("Identifier", "USES")
ATTRIBUTE_LABELS = {
    "ips": "IP",
    "payment_methods": "PaymentMethod",
    "prompt_fingerprints": "PromptFingerprint",
}
LABELS = frozenset(
    {
        "Account",
        "PaymentMethod",
        "IP",
        "PromptFingerprint",
        "Identifier",
        "Usage",
        "Ring",
        "Campaign",
        "Sweep",
        "GroundTruth",
        "Decision",
        "GraphinvMeta",
        "GraphinvLock",
    }
)
# graphinv's own bookkeeping (facts, the write lock): not part of the platform's graph.
INTERNAL_LABELS = ("GraphinvMeta", "GraphinvLock")
REL_TYPES = frozenset(
    {
        "PAID_WITH",
        "CONNECTED_FROM",
        "SENT",
        "USES",
        "HAS_USAGE",
        "IN_RING",
        "PART_OF",
        "FOUND_IN",
        "CONTINUES",
    }
)
LINK_TYPES = ("PAID_WITH", "CONNECTED_FROM", "SENT", "USES")
assert set(KIND_GRAPH) == set(CORE_LINK_KINDS)


def graph_of(kind: str) -> tuple[str, str]:
    """Label of the identifier node and type of the relationship for a link kind."""
    label, rel_type = KIND_GRAPH.get(kind, GENERIC_GRAPH)
    return checked_label(label), checked_type(rel_type)


def checked_label(label: str) -> str:
    if label not in LABELS:
        raise ValueError(f"label {label!r} is not on graphinv's allow-list")
    return label


def checked_type(rel_type: str) -> str:
    if rel_type not in REL_TYPES:
        raise ValueError(f"relationship type {rel_type!r} is not on graphinv's allow-list")
    return rel_type


# -- schema -----------------------------------------------------------------------------

CONSTRAINTS = (
    "CREATE CONSTRAINT account_id IF NOT EXISTS FOR (n:Account) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT payment_method_id IF NOT EXISTS "
    "FOR (n:PaymentMethod) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT ip_id IF NOT EXISTS FOR (n:IP) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT prompt_fingerprint_id IF NOT EXISTS "
    "FOR (n:PromptFingerprint) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT identifier_kind_id IF NOT EXISTS "
    "FOR (n:Identifier) REQUIRE (n.kind, n.id) IS UNIQUE",
    "CREATE CONSTRAINT usage_account_model IF NOT EXISTS "
    "FOR (n:Usage) REQUIRE (n.account_id, n.model) IS UNIQUE",
    "CREATE CONSTRAINT sweep_id IF NOT EXISTS FOR (n:Sweep) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT ring_sweep_id IF NOT EXISTS "
    "FOR (n:Ring) REQUIRE (n.sweep_id, n.id) IS UNIQUE",
    "CREATE CONSTRAINT campaign_sweep_id IF NOT EXISTS "
    "FOR (n:Campaign) REQUIRE (n.sweep_id, n.id) IS UNIQUE",
    "CREATE CONSTRAINT ground_truth_account IF NOT EXISTS "
    "FOR (n:GroundTruth) REQUIRE n.account_id IS UNIQUE",
    "CREATE CONSTRAINT graphinv_meta_key IF NOT EXISTS "
    "FOR (n:GraphinvMeta) REQUIRE n.key IS UNIQUE",
    # The write lock is a node whose creation this constraint makes atomic: of two
    # processes creating it at once, the second fails.
    "CREATE CONSTRAINT graphinv_lock_name IF NOT EXISTS "
    "FOR (n:GraphinvLock) REQUIRE n.name IS UNIQUE",
)
INDEXES = (
    "CREATE INDEX ring_id IF NOT EXISTS FOR (n:Ring) ON (n.id)",
    "CREATE INDEX ring_rank IF NOT EXISTS FOR (n:Ring) ON (n.rank)",
    "CREATE INDEX identifier_kind IF NOT EXISTS FOR (n:Identifier) ON (n.kind)",
    "CREATE INDEX decision_ring IF NOT EXISTS FOR (n:Decision) ON (n.ring_id)",
)
AWAIT_INDEXES = "CALL db.awaitIndexes($seconds)"


def schema_script() -> str:
    """The constraints and indexes as a ``.cypher`` script (``schemas/neo4j-schema.cypher``)."""
    header = (
        "// graphinv Neo4j schema: uniqueness constraints (created before any load) and\n"
        "// indexes. Generated from graphinv/stores/cypher.py; tests check they agree.\n"
    )
    return header + "".join(f"{s};\n" for s in (*CONSTRAINTS, *INDEXES))


# -- loading ----------------------------------------------------------------------------


def _datetime(expr: str) -> str:
    # datetime.fromepoch is cheaper per row than building datetime({…}) from a map.
    return f"datetime.fromepoch({expr} / 1000000, {expr} % 1000000 * 1000)"


def _micros(expr: str) -> str:
    return f"{expr}.epochSeconds * 1000000 + {expr}.microsecond"


# Node writes return their keys and element ids (one row of two aligned lists per batch, far
# cheaper to receive than a record per node): relationship batches then find both ends with
# NodeByElementIdSeek, cheaper than a locking unique-index seek per row.
_NODE_KEYS = "RETURN collect({key}) AS keys, collect(elementId({var})) AS nodes"


def accounts_query(*, create: bool) -> str:
    """Write ``$rows`` = [account_id, created_us, email_domain, …] (``TABLES`` order).

    ``create`` is the first-load path (no Account node yet): one CREATE per row, missing
    values simply not stored. Otherwise MERGE with the merge rule of ``stores.base``.
    """
    columns = TABLES["accounts"].column_names
    if create:
        values = ["r[0]", _datetime("r[1]"), *(f"r[{i}]" for i in range(2, len(columns)))]
        properties = ", ".join(
            f"{name}: {value}" for name, value in zip(("id", *columns[1:]), values, strict=True)
        )
        return f"UNWIND $rows AS r\nCREATE (a:Account {{{properties}}})\n" + _NODE_KEYS.format(
            key="r[0]", var="a"
        )
    sets = [
        "a.created_at = CASE WHEN a.created_at IS NULL OR created < a.created_at "
        "THEN created ELSE a.created_at END",
        *(f"a.{name} = coalesce(r[{i}], a.{name})" for i, name in enumerate(columns[2:], 2)),
    ]
    return (
        f"UNWIND $rows AS r\nWITH r, {_datetime('r[1]')} AS created\n"
        "MERGE (a:Account {id: r[0]})\nSET "
        + ",\n    ".join(sets)
        + "\n"
        + _NODE_KEYS.format(key="r[0]", var="a")
    )


ACCOUNT_NODES = "UNWIND $rows AS v\nMATCH (a:Account {id: v})\n" + _NODE_KEYS.format(
    key="v", var="a"
)


def identifier_nodes_query(kind: str, *, create: bool) -> str:
    """Write the identifier nodes of one kind; ``$rows`` = [value, …].

    ``create`` is the first-load path, when no node of the label (of the kind, for
    ``Identifier``) exists yet and the values are distinct.
    """
    label, _ = graph_of(kind)
    verb = "CREATE" if create else "MERGE"
    keys = "{kind: $kind, id: v}" if label == GENERIC_GRAPH[0] else "{id: v}"
    return f"UNWIND $rows AS v\n{verb} (n:{label} {keys})\n" + _NODE_KEYS.format(key="v", var="n")


def link_query(kind: str, *, create: bool) -> str:
    """Relationships of one kind from ``$rows`` = [account node, identifier node, first_us,
    last_us, count], nodes as element ids from the node writes; returns ``written``.

    ``create`` is the first-load path: when no relationship of the type exists yet and the
    rows' keys are unique (validated), CREATE gives the same graph as MERGE without
    scanning each account's relationships.
    """
    label, rel_type = graph_of(kind)
    head = (
        "UNWIND $rows AS r\n"
        "MATCH (a:Account) WHERE elementId(a) = r[0]\n"
        f"MATCH (t:{label}) WHERE elementId(t) = r[1]\n"
        f"WITH a, t, r, {_datetime('r[2]')} AS fs, {_datetime('r[3]')} AS ls\n"
    )
    if create:
        properties = "{first_seen: fs, last_seen: ls, count: r[4]}"
        return head + f"CREATE (a)-[:{rel_type} {properties}]->(t)\nRETURN count(*) AS written"
    return head + (
        f"MERGE (a)-[l:{rel_type}]->(t)\n"
        "ON CREATE SET l.first_seen = fs, l.last_seen = ls, l.count = r[4]\n"
        "ON MATCH SET l.first_seen = CASE WHEN fs < l.first_seen THEN fs ELSE l.first_seen END,\n"
        "  l.last_seen = CASE WHEN ls > l.last_seen THEN ls ELSE l.last_seen END,\n"
        "  l.count = CASE WHEN r[4] > l.count THEN r[4] ELSE l.count END\n"
        "RETURN count(*) AS written"
    )


def label_present_query(label: str) -> str:
    """Whether any node of a label exists (answered from the count store)."""
    return f"MATCH (n:{checked_label(label)}) RETURN count(n) > 0 AS present"


IDENTIFIER_KIND_PRESENT = (
    "MATCH (n:Identifier {kind: $kind}) WITH n LIMIT 1 RETURN count(n) > 0 AS present"
)


def relationship_exists_query(rel_type: str) -> str:
    """Whether any relationship of a type exists (answered from the count store)."""
    return f"MATCH ()-[l:{checked_type(rel_type)}]->() RETURN count(l) > 0 AS present"


def attribute_query(table: str) -> str:
    """MERGE attribute rows onto identifier nodes; newer non-missing values win."""
    label = checked_label(ATTRIBUTE_LABELS[table])
    columns = TABLES[table].column_names
    sets = ",\n    ".join(
        f"n.{name} = coalesce(r[{i}], n.{name})" for i, name in enumerate(columns[1:], start=1)
    )
    return f"UNWIND $rows AS r\nMERGE (n:{label} {{id: r[0]}})\nSET {sets}"


# Ground truth is for evaluation, never on the graph investigators explore: one unlinked
# (:GroundTruth) node per labelled account, which no saved query or guide query reads.
# Older graphs held labels as Account properties; a load of labels removes those.
LABELS_SET = (
    "UNWIND $rows AS r\n"
    "MERGE (t:GroundTruth {account_id: r[0]})\n"
    "SET t.ring_id = r[1], t.kind = r[2],\n"
    "    t.campaign_id = coalesce(r[3], t.campaign_id),\n"
    "    t.traits = coalesce(r[4], t.traits)\n"
    "WITH r\n"
    "OPTIONAL MATCH (a:Account {id: r[0]}) WHERE a.label_kind IS NOT NULL\n"
    "REMOVE a.label_ring_id, a.label_kind, a.label_campaign_id, a.label_traits"
)

USAGE_READ_KEYS = (
    "UNWIND $keys AS k\n"
    "MATCH (u:Usage {account_id: k[0], model: k[1]})\n"
    "RETURN u.account_id AS account_id, u.model AS model, u.hours AS hours,\n"
    "       u.requests AS requests, u.input_tokens AS input_tokens,\n"
    "       u.output_tokens AS output_tokens"
)
# First load (no Usage node yet): no stored arrays to merge, no MERGE on either side.
USAGE_CREATE = (
    "UNWIND $rows AS r\n"
    "CREATE (u:Usage {account_id: r[0], model: r[1], hours: r[2], requests: r[3],\n"
    "    input_tokens: r[4], output_tokens: r[5]})\n"
    "WITH u, r\n"
    "MATCH (a:Account {id: r[0]})\n"
    "CREATE (a)-[:HAS_USAGE]->(u)"
)
USAGE_WRITE = (
    "UNWIND $rows AS r\n"
    "MERGE (u:Usage {account_id: r[0], model: r[1]})\n"
    "SET u.hours = r[2], u.requests = r[3], u.input_tokens = r[4], u.output_tokens = r[5]\n"
    "WITH u, r\n"
    "MATCH (a:Account {id: r[0]})\n"
    "MERGE (a)-[:HAS_USAGE]->(u)"
)

# -- reading ----------------------------------------------------------------------------

ACCOUNTS_READ = (
    "MATCH (a:Account)\nRETURN a.id AS account_id, "
    + _micros("a.created_at")
    + " AS created_at, "
    + ", ".join(f"a.{c} AS {c}" for c in TABLES["accounts"].column_names[2:])
)
LINKS_READ = (
    "MATCH (a:Account)-[l:" + "|".join(LINK_TYPES) + "]->(t)\n"
    "RETURN a.id AS account_id, type(l) AS rel_type, t.kind AS kind, t.id AS value, "
    + _micros("l.first_seen")
    + " AS first_seen, "
    + _micros("l.last_seen")
    + " AS last_seen, l.count AS count"
)
USAGE_READ = (
    "MATCH (u:Usage)\n"
    "RETURN u.account_id AS account_id, u.model AS model, u.hours AS hours,\n"
    "       u.requests AS requests, u.input_tokens AS input_tokens,\n"
    "       u.output_tokens AS output_tokens"
)


def attribute_read_query(table: str) -> str:
    """Identifier nodes that carry attributes, as rows of the attribute table."""
    label = checked_label(ATTRIBUTE_LABELS[table])
    columns = TABLES[table].column_names
    described = " OR ".join(f"n.{c} IS NOT NULL" for c in columns[1:])
    returns = ", ".join([f"n.id AS {columns[0]}", *(f"n.{c} AS {c}" for c in columns[1:])])
    return f"MATCH (n:{label})\nWHERE {described}\nRETURN {returns}"


# One ring's neighbourhood (Store.read_neighbourhood): the same rows as the reads above,
# limited to the accounts $ids and the identifiers they use.
ACCOUNTS_NEAR_READ = ACCOUNTS_READ.replace(
    "MATCH (a:Account)\n", "MATCH (a:Account) WHERE a.id IN $ids\n", 1)
LINKS_NEAR_READ = (
    "MATCH (m:Account)-[:" + "|".join(LINK_TYPES) + "]->(t) WHERE m.id IN $ids\n"
    "WITH DISTINCT t\n"
    "MATCH (a:Account)-[l:" + "|".join(LINK_TYPES) + "]->(t)\n"
    + LINKS_READ.split("\n", 1)[1]
)
USAGE_NEAR_READ = USAGE_READ.replace(
    "MATCH (u:Usage)\n", "MATCH (u:Usage) WHERE u.account_id IN $ids\n", 1)


def attribute_near_query(table: str) -> str:
    """The attribute table's rows of identifiers that the accounts ``$ids`` use."""
    label = checked_label(ATTRIBUTE_LABELS[table])
    full = attribute_read_query(table)
    assert full.startswith(f"MATCH (n:{label})\nWHERE ")
    return (f"MATCH (m:Account)-[]->(n:{label}) WHERE m.id IN $ids\n"
            f"WITH DISTINCT n\nWHERE " + full.split("\nWHERE ", 1)[1])


ANY_ACCOUNT = "MATCH (a:Account) RETURN a.id AS id LIMIT 1"

# Each ring's score breakdown (JSON text) on its Ring node; rows: [ring_id, breakdown].
BREAKDOWN_WRITE = (
    "UNWIND $rows AS r\n"
    "MATCH (g:Ring {sweep_id: $sweep_id, id: r[0]})\n"
    "SET g.breakdown = r[1]\n"
    "RETURN count(g) AS written"
)
BREAKDOWN_READ = (
    "MATCH (g:Ring {sweep_id: $sweep_id, id: $ring_id})\nRETURN g.breakdown AS breakdown"
)

LABELS_READ = (
    "MATCH (t:GroundTruth)\n"
    "RETURN t.account_id AS account_id, t.ring_id AS ring_id, t.kind AS kind,\n"
    "       t.campaign_id AS campaign_id, t.traits AS traits"
)

# -- sweeps and rings -------------------------------------------------------------------

SWEEP_CLEAR_RINGS = "MATCH (g:Ring {sweep_id: $sweep_id}) DETACH DELETE g"
SWEEP_CLEAR_CAMPAIGNS = "MATCH (c:Campaign {sweep_id: $sweep_id}) DETACH DELETE c"
SWEEP_MERGE = "MERGE (s:Sweep {id: $sweep_id})\nSET s.at = datetime($at), s.params = $params"
CAMPAIGNS_CREATE = (
    "UNWIND $rows AS r\n"
    "CREATE (:Campaign {sweep_id: $sweep_id, id: r.campaign_id, n_rings: r.n_rings, "
    "size: r.size})"
)
RINGS_CREATE = (
    "MATCH (s:Sweep {id: $sweep_id})\n"
    "UNWIND $rows AS r\n"
    "CREATE (g:Ring {sweep_id: $sweep_id, id: r.ring_id})-[:FOUND_IN]->(s)\n"
    "SET g += r.props\n"
    "WITH g, r WHERE r.props.campaign_id IS NOT NULL\n"
    "MATCH (c:Campaign {sweep_id: $sweep_id, id: r.props.campaign_id})\n"
    "CREATE (g)-[:PART_OF]->(c)"
)
MEMBERS_CREATE = (
    "UNWIND $rows AS r\n"
    "MATCH (g:Ring {sweep_id: $sweep_id, id: r[0]})\n"
    "MATCH (a:Account {id: r[1]})\n"
    "CREATE (a)-[:IN_RING]->(g)\n"
    "RETURN count(*) AS written"
)
SWEEPS_READ = "MATCH (s:Sweep)\nRETURN s.id AS sweep_id, toString(s.at) AS at, s.params AS params"
LATEST_SWEEP = "MATCH (s:Sweep)\nRETURN s.id AS sweep_id\nORDER BY s.at DESC, s.id DESC LIMIT 1"
RINGS_READ = (
    "MATCH (g:Ring {sweep_id: $sweep_id})\n"
    "RETURN g.sweep_id AS sweep_id, g.id AS ring_id, g.size AS size, g.score AS score,\n"
    "       g.rank AS rank, g.campaign_id AS campaign_id, g.explanation AS explanation,\n"
    "       g.features AS features, g.flagged AS flagged, g.status AS status,\n"
    "       g.predecessors AS predecessors, g.lineage_evidence AS lineage_evidence,\n"
    "       g.density AS density"
)
# Rows: [ring_id, previous_ring_id, status, shared_members, member_jaccard,
# shared_identifiers, infra_overlap]; runs in the transaction that creates the rings.
LINEAGE_CREATE = (
    "UNWIND $rows AS r\n"
    "MATCH (g:Ring {sweep_id: $sweep_id, id: r[0]})\n"
    "MATCH (p:Ring {sweep_id: $previous_sweep_id, id: r[1]})\n"
    "CREATE (g)-[:CONTINUES {status: r[2], shared_members: r[3], member_jaccard: r[4],\n"
    "    shared_identifiers: r[5], infra_overlap: r[6]}]->(p)\n"
    "RETURN count(*) AS written"
)
LINEAGE_READ = (
    "MATCH (g:Ring {sweep_id: $sweep_id})-[c:CONTINUES]->(p:Ring)\n"
    "RETURN g.sweep_id AS sweep_id, p.sweep_id AS previous_sweep_id, g.id AS ring_id,\n"
    "       p.id AS previous_ring_id, c.status AS status, c.shared_members AS shared_members,\n"
    "       c.member_jaccard AS member_jaccard, c.shared_identifiers AS shared_identifiers,\n"
    "       c.infra_overlap AS infra_overlap"
)
# Edges written before lineage statuses had their own name held the status as `kind`.
LINEAGE_STATUS_UPGRADE = (
    "MATCH ()-[c:CONTINUES]->() WHERE c.kind IS NOT NULL AND c.status IS NULL\n"
    "SET c.status = c.kind REMOVE c.kind"
)
RING_EXISTS = "MATCH (g:Ring {sweep_id: $sweep_id, id: $ring_id}) RETURN count(g) AS n"
MEMBERS_READ = (
    "MATCH (a:Account)-[:IN_RING]->(g:Ring {sweep_id: $sweep_id, id: $ring_id})\n"
    "RETURN g.id AS ring_id, a.id AS account_id\nORDER BY account_id"
)
SWEEP_MEMBERS_READ = (
    "MATCH (a:Account)-[:IN_RING]->(g:Ring {sweep_id: $sweep_id})\n"
    "RETURN g.id AS ring_id, a.id AS account_id\nORDER BY ring_id, account_id"
)
RINGS_MEMBERS_READ = (
    "MATCH (a:Account)-[:IN_RING]->(g:Ring {sweep_id: $sweep_id})\nWHERE g.id IN $ring_ids\n"
    "RETURN g.id AS ring_id, a.id AS account_id\nORDER BY ring_id, account_id"
)

# -- review decisions (graphinv.investigate.review) --------------------------------------

# An append-only log of (:Decision) nodes keyed by the stable ring id, not linked to the
# per-sweep Ring nodes: a decision outlives the sweep it was made in.
DECISION_CREATE = (
    "CREATE (:Decision {ring_id: $ring_id, at: datetime($at), by: $by, status: $status,\n"
    "    assignee: $assignee, note: $note, sweep_id: $sweep_id, size: $size})"
)
DECISIONS_READ = (
    "MATCH (d:Decision)\n"
    "RETURN d.ring_id AS ring_id, toString(d.at) AS at, d.by AS by, d.status AS status,\n"
    "       d.assignee AS assignee, d.note AS note, d.sweep_id AS sweep_id, d.size AS size\n"
    "ORDER BY d.at, elementId(d)"
)

# -- facts and the write lock -----------------------------------------------------------

# Facts about the store itself, one (:GraphinvMeta {key, value}) node per fact.
META_READ = "MATCH (m:GraphinvMeta) RETURN m.key AS key, m.value AS value"
META_WRITE = "UNWIND $rows AS row\nMERGE (m:GraphinvMeta {key: row.key})\nSET m.value = row.value"
LOCK_TAKE = "CREATE (l:GraphinvLock {name: $name})\nSET l += $holder"
LOCK_READ = "MATCH (l:GraphinvLock {name: $name}) RETURN properties(l) AS holder"
LOCK_RELEASE = "MATCH (l:GraphinvLock {name: $name, token: $token}) DELETE l"
LOCK_BREAK = "MATCH (l:GraphinvLock {name: $name}) DELETE l"

# -- inspection -------------------------------------------------------------------------

NODE_COUNTS = (
    "MATCH (n) UNWIND labels(n) AS label WITH label WHERE NOT label IN $internal\n"
    "RETURN label, count(*) AS n ORDER BY label"
)
RELATIONSHIP_COUNTS = "MATCH ()-[r]->() RETURN type(r) AS type, count(*) AS n ORDER BY type"
