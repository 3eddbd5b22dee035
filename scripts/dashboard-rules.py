"""Prints the Grafana dashboard's queries as a Prometheus rules file (JSON, which promtool
reads as YAML), so `promtool check rules` parses every query: make test runs it."""
import json
import sys

dashboard = json.load(open(sys.argv[1]))
rules = [
    {"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": target["expr"]}
    for panel in dashboard["panels"]
    for target in panel["targets"]
]
print(json.dumps({"groups": [{"name": "dashboard-queries", "rules": rules}]}, indent=2))
