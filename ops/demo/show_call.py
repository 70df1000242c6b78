"""Prints a forwarder CDR (`forwarder cdr show ID`, JSON on stdin) readably:
the candidates with prices and latencies and why the chosen one won, every
attempt, the outcome and the charge."""
import json
import sys

cdr = json.load(sys.stdin)


def ms(v):
    return "-" if v is None else f"{v:.1f} ms"


def exclusion(e):
    if isinstance(e, str):
        return e
    if isinstance(e, dict):
        reason = str(e.get("reason", "?")).replace("_", " ")
        detail = ", ".join(f"{k} {v}" for k, v in e.items() if k != "reason")
        return f"{reason} ({detail})" if detail else reason
    return str(e)


print(f"   call {cdr['id']}: {cdr.get('caller_number')} -> {cdr['called_number']}, status {cdr['status']}")
for t in (cdr.get("decision") or {}).get("targets", []):
    d = t.get("decision") or {}
    policy = d.get("policy", {})
    print(
        f"   forwarded to {t['forward_to']} (routes from {t.get('routes')}); unit cost = cost of a "
        f"{policy.get('typical_call_secs')} s call per minute, latency decides within "
        f"{float(policy.get('cost_tolerance', 0)) * 100:.0f} % of the cheapest"
    )
    print(f"     {'rank':<4} {'provider':<10} {'prefix':<6} {'rate/min':>8} {'incr':>6} {'unit cost':>9} {'latency':>9}  verdict")
    cands = sorted(d.get("candidates", []), key=lambda c: (c["rank"] is None, c["rank"] or 0))
    # Latency decides only when another candidate is in the cheapest's cost band.
    contested = sum(1 for c in cands if c["in_band"] and c["rank"] is not None) > 1
    for c in cands:
        r = c["rate"]
        if c["rank"] == 0:
            verdict = "chosen: " + ("lowest latency in the cost band" if contested else "cheapest")
        elif c["rank"] is not None:
            verdict = "in the cost band, slower" if c["in_band"] else "fallback (dearer)"
        else:
            verdict = "excluded: " + exclusion(c["excluded"])
        rank = "-" if c["rank"] is None else str(c["rank"] + 1)
        print(
            f"     {rank:<4} {c['name']:<10} {c['prefix']:<6} {r['per_minute']:>8} "
            f"{str(r['first_increment']) + '/' + str(r['next_increment']):>6} {c['unit_cost']:>9} "
            f"{ms(c.get('latency')):>9}  {verdict}"
        )
    if t.get("error"):
        print(f"     error: {t['error']}")
print("   attempts:")
for i, a in enumerate(cdr.get("attempts", []), 1):
    status = a.get("status")
    outcome = a["outcome"]
    if status is not None and not str(outcome).startswith(str(status)):
        outcome = f"{outcome} ({status})"
    print(f"     {i}. {a.get('provider') or '-':<10} {outcome:<26} after {a.get('ended_after_ms')} ms  ({a['target']})")
rating = cdr.get("rating") or {}
if cdr.get("answered_at"):
    print(
        f"   answered by {cdr.get('provider_name')}, {cdr.get('billable_seconds')} s billable, "
        f"hangup: {cdr.get('hangup_cause')}"
    )
if rating:
    print(
        f"   charged {rating['price']} {rating['currency']} (provider's cost {rating['provider_cost']}, "
        f"margin {rating['margin']})"
    )
