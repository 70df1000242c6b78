"""Prints a route answer from central (JSON on stdin) as a readable table."""
import json
import sys

answer = json.load(sys.stdin)
routes = answer["routes"]
if not routes:
    print("     nobody will carry this call")
for i, r in enumerate(routes):
    addr = ", ".join(f"{s['address']}/{s['transport']}" for s in r["sip_addresses"])
    why = "<- cheapest" if i == 0 else ""
    print(
        f"     {r['provider']:<10} prefix {r['prefix']:<6} {r['rate_per_minute']:>8} {r['currency']}/min"
        f"  connect {r['connect_fee']:<7} billed {r['first_increment']}/{r['next_increment']} s"
        f"  via {addr}  {why}"
    )
