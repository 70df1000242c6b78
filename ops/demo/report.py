"""Small readable views for ops/run.sh, reading JSON or CSV on stdin.

    forwarder cdr list ID      | python3 report.py cdrs
    forwarder account show ID  | python3 report.py account ID
    curl .../v1/settlements (CSV) | python3 report.py settlements
"""
import csv
import json
import sys


def cdrs():
    v = json.load(sys.stdin)
    rows = v.get("cdrs", v) if isinstance(v, dict) else v
    for c in rows:
        r = c.get("rating") or {}
        via = c.get("provider_name") or "-"
        billable = c.get("billable_seconds") or 0
        price = f"{r['price']} {r['currency']}" if r else "-"
        print(
            f"   {c['received_at'][:19]}  {c['called_number']} -> {c.get('target') or '-':<14} "
            f"{c['status']:<9} via {via:<10} {billable:>3} s billable  charged {price}"
        )
    if not rows:
        print("   (no calls)")


def account(sub):
    a = json.load(sys.stdin)
    standing = a.get("standing", {})
    print(f"   subscriber {sub}: balance {standing.get('balance')} {a.get('currency', '')}")
    for e in a.get("entries", [])[:10]:
        what = e.get("cdr_id") or e.get("reason") or e.get("idempotency_key")
        print(f"     {e['created_at'][:19]}  {e['kind']:<11} {e['amount']:>8}  {what}")


def settlements():
    rows = list(csv.DictReader(sys.stdin))
    for r in rows:
        print(
            f"   payer {r['payer_id']} -> provider {r['provider_id']}: {r['tickets']} tickets, "
            f"{r['billable_seconds']} s, {r['amount']} {r['currency']}"
            f" (disputed {r['disputed_tickets']}, provider-only {r['provider_only_tickets']})"
        )
    if not rows:
        print("   (nothing settled yet)")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "cdrs":
        cdrs()
    elif what == "account":
        account(sys.argv[2] if len(sys.argv) > 2 else "?")
    elif what == "settlements":
        settlements()
    else:
        sys.exit(__doc__)
