"""The billing oracle of the cluster trials (trials.py): what the usage ledger in PostgreSQL
holds for a conversation, checked against what the participants saw.

The ground truth per participant is a list of **stays**: from the moment its probe printed
`joined` (media attached) to the moment the stay ended, which is either the probe's own
`leave` (trials.py sends SIGINT; the probe leaves, closes and prints `left`) or a failure the
trial caused (the kill -9 of the home, a SIGSTOP), with the instant of that failure.

Checked for every participant (one user identity per participant):
- every session of the conversation is closed;
- **exactly one usage record per session per UTC day**: the records of a session are its UTC
  day segments 0..n-1, each inside one UTC day, contiguous, together exactly the session's
  span; no record id twice;
- **no double billing**: the participant's sessions do not overlap one another (beyond
  `SLACK_MS`), and together bill no more than the wall time from its first join request to its
  last `left` (+ slack);
- an **abandoned** stay (a probe that did not leave and was killed) may be billed past its
  end by the reconnect grace, as a dropped socket is (docs/billing.md);
- **one continuous record through a takeover**: a participant that came back by `resume`
  under its participant id (Truth.continued) has one session spanning the failure, from
  before it to after the resume;
- **the documented bound** (docs/billing.md, docs/cluster.md): a session ended by the
  participant's own leave ends between the SIGINT and `left` (± slack); a stay cut by a failure
  is billed up to the failure, short by at most one checkpoint interval (+ slack), never past
  it unless the session continued on the new home (resumed: one session across the gap);
  every moment of every stay is billed except those shortfalls.

Returns figures (records, sessions, worst shortfall) for the report; raises AssertionError
(through `check`) on the first violation.
"""

import datetime

# Server and test read the same clock; allow for ms rounding, the recorder's queue and a
# loaded 2-core machine.
SLACK_MS = 500


def day_of(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).date()


def query(pg, database, sql):
    """Rows of `sql` as lists of strings (psql unaligned, '|' separated)."""
    text = pg.scalar(database, sql)
    return [line.split("|") for line in text.splitlines() if line]


def where(raw_ids, since_ms):
    """The sessions of `raw_ids` started since `since_ms` (a trial's users, from its start:
    every trial's sessions are closed before the next one begins)."""
    ids = ",".join(f"'{r}'" for r in raw_ids)
    return f"participant_raw_id IN ({ids}) AND start_ms >= {since_ms}"


def sessions_of(pg, database, raw_ids, since_ms):
    """{raw id: [(session id, start, end or None, reason, owner)]}, oldest first."""
    rows = query(pg, database,
                 "SELECT session_id, participant_raw_id, start_ms, coalesce(end_ms, -1), coalesce(end_reason, ''), owner_node "
                 f"FROM sessions WHERE {where(raw_ids, since_ms)} ORDER BY start_ms")
    out = {}
    for sid, raw, start, end, reason, owner in rows:
        out.setdefault(raw, []).append((sid, int(start), None if int(end) < 0 else int(end), reason, owner))
    return out


def open_sessions(pg, database, raw_ids, since_ms):
    return int(pg.scalar(database, f"SELECT count(*) FROM sessions WHERE {where(raw_ids, since_ms)} AND end_ms IS NULL"))


def records_of(pg, database, session_ids):
    """{session id: [(record id, segment, start, end)]} by segment."""
    if not session_ids:
        return {}
    ids = ",".join(f"'{s}'" for s in session_ids)
    rows = query(pg, database, "SELECT record_id, participant_id, segment, start_ms, end_ms FROM usage_records "
                               f"WHERE participant_id IN ({ids}) ORDER BY participant_id, segment")
    out = {}
    for rid, pid, seg, start, end in rows:
        out.setdefault(pid, []).append((rid, int(seg), int(start), int(end)))
    return out


def check_conversation(pg, database, conversation_like, participants, checkpoint_ms, check):
    """Runs the oracle over one conversation (`conversation_like` names it in messages).
    `participants`: {raw id: Truth}; their sessions since the first join request count."""
    since = min(t.first_request_ms for t in participants.values()) - SLACK_MS
    sessions = sessions_of(pg, database, list(participants), since)
    check(f"{conversation_like}: every session is closed",
          all(end is not None for rows in sessions.values() for (_, _, end, _, _) in rows), sessions)
    all_ids = [sid for rows in sessions.values() for (sid, *_rest) in rows]
    records = records_of(pg, database, all_ids)
    record_ids = [r[0] for rows in records.values() for r in rows]
    check(f"{conversation_like}: no record id twice", len(record_ids) == len(set(record_ids)), record_ids)
    worst_short, continued = 0, 0
    for raw, truth in participants.items():
        rows = sessions.get(raw, [])
        check(f"{conversation_like} {truth.name}: has sessions", rows, sessions)
        for sid, start, end, reason, owner in rows:
            recs = records.get(sid, [])
            days = (day_of(end) - day_of(start)).days + 1
            check(f"{truth.name} session {sid}: one record per UTC day ({days})", len(recs) == days, recs)
            check(f"{truth.name} session {sid}: segments 0..{days - 1}", [r[1] for r in recs] == list(range(days)), recs)
            check(f"{truth.name} session {sid}: the records cover the session exactly",
                  recs[0][2] == start and recs[-1][3] == end
                  and all(a[3] == b[2] for a, b in zip(recs, recs[1:]))
                  and all(day_of(r[2]) == day_of(max(r[2], r[3] - 1)) for r in recs), (start, end, recs))
        for before, after in truth.continued:
            spanning = [sid for sid, start, end, _, _ in rows if start <= before + SLACK_MS and end >= after]
            check(f"{truth.name}: one session through the takeover (resumed at {after})", len(spanning) == 1, rows)
            continued += 1
        spans = sorted((start, end) for (_, start, end, _, _) in rows)
        for (a_start, a_end), (b_start, b_end) in zip(spans, spans[1:]):
            check(f"{truth.name}: sessions do not overlap (no double billing)", b_start >= a_end - SLACK_MS, rows)
        billed = sum(end - start for start, end in spans)
        wall = truth.last_left_ms() - truth.first_request_ms
        check(f"{truth.name}: bills no more than its time in the call ({billed} ms <= {wall} ms + {truth.allowance_ms} ms)",
              billed <= wall + SLACK_MS + truth.allowance_ms, (spans, truth.stays))
        for stay in truth.stays:
            short = uncovered_ms(spans, stay.joined_ms, stay.end_ms)
            allowed = SLACK_MS + (checkpoint_ms if stay.failure else 0)
            worst_short = max(worst_short, short if stay.failure else 0)
            check(f"{truth.name}: stay {stay} billed but for {short} ms (bound {allowed} ms)", short <= allowed,
                  (spans, truth.stays))
            if stay.failure is None:
                ends = [end for start, end in spans if start <= stay.end_ms]
                check(f"{truth.name}: the session it left ends at its leave", ends and
                      stay.leave_sent_ms - SLACK_MS <= ends[-1] <= stay.end_ms + SLACK_MS, (spans, stay))
    return {"sessions": len(all_ids), "records": len(record_ids), "worst_short_ms": worst_short, "continued": continued}


def uncovered_ms(spans, start, end):
    """Milliseconds of [start, end] covered by no span."""
    covered, cursor = 0, start
    for s, e in sorted(spans):
        s, e = max(s, cursor), min(e, end)
        if e > s:
            covered += e - s
            cursor = e
    return max(0, (end - start) - covered)


class Stay:
    """One uninterrupted presence in the call, as its probe saw it."""

    def __init__(self, joined_ms, end_ms, failure=None, leave_sent_ms=None):
        self.joined_ms, self.end_ms, self.failure, self.leave_sent_ms = joined_ms, end_ms, failure, leave_sent_ms

    def __repr__(self):
        how = self.failure or "left"
        return f"[{self.joined_ms}..{self.end_ms} {how}]"


class Truth:
    """What one participant went through: its first join request and its stays."""

    def __init__(self, name, first_request_ms):
        self.name, self.first_request_ms = name, first_request_ms
        self.stays = []
        # Billing allowed past the last stay: an abandoned socket is billed through its
        # reconnect grace (docs/billing.md).
        self.allowance_ms = 0
        # (last join before a failure, the resume after it) for each failure it came back
        # from by `resume`: one session must span it.
        self.continued = []

    def last_left_ms(self):
        return max(s.end_ms for s in self.stays)
