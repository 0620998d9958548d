"""SLA policies, business calendars, per-ticket clocks and the deadline index (pure core).

Modules: `policy` (YAML policy files), `calendar` (business-time arithmetic), `clocks` (one
clock per ticket and metric), `state` (the stored per-ticket state and the output records),
`lifecycle` (the entry points), `transitions` / `escalation` / `events` (their internals),
`index` (in-memory due times), `render` (outputs as CloudEvents records, action parsing, the
internal `tickets.commands` records), `outbox` (the stored value: state plus outputs not yet
safe). `streams/stages/lifecycle.py` drives it on Kafka.

Driving it from a stream stage keyed by ticket id (table value: `encode_state(state)` bytes):

    config = load_sla_config(path)                     # once; reload = load again
    step = on_ticket_event(state, event, event_id=ce.id, now=now, config=config, vendors=vendors)
    step = on_action(state, action, action_id=ce.id, now=now, config=config, vendors=vendors)
    step = on_tick(state, now, config=config)          # for each ticket id the index pops

    if step.state is not state:                        # unchanged input comes back as is
        publish(step.outputs)                          # ids are replay-stable: publish first,
        table[ticket_id] = encode_state(step.state)    # then store (a crash between the two
    entry = index_entry(step.state)                    # replays the input with the same ids)
    index.add(partition, *entry) if entry else index.discard(partition, ticket_id)

On partition assignment: `index.assign(p, (index_entry_from_json(v) for v in table values of
p))`; on revocation: `index.revoke(p)`. Every second: `for p, tid in index.pop_due(now_ts)`,
read the table, call `on_tick`, handle the step as above (a stale pop changes nothing).

Outputs and the table write go to different partitions, so after a crash either may be durable
without the other. When the state is and the outputs are not, replaying the input changes
nothing; so the stored value also keeps a step's rendered outputs until its input offset is
committed, and a replayed input re-sends them (`outbox`).
"""
