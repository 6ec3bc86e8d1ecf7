from kpns_sdk.cli import run

run()
