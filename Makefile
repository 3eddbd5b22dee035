# Fanout: the two commands that matter are `make up` and `make test` (see README.md).
.PHONY: up down reset test bench fuzz openapi lint fmt record-histories e2e-under-load

up: ## build and start the whole stack in the background, seed the demo tenant
	@bash scripts/up.sh

down: ## stop the stack (state is kept)
	@bash scripts/down.sh

reset: ## stop the stack and wipe its state
	@bash scripts/reset.sh

test: ## the whole test suite
	@bash scripts/test.sh

openapi: ## regenerate api/openapi.json from the code (a test fails while it is out of date)
	cargo run -q -p fanout-api -- openapi --out api/openapi.json

e2e-under-load: ## the e2e suite 5 times in a row with both cores busy (flaky-test hunt; not part of make test)
	@bash scripts/e2e-under-load.sh

fuzz: ## schemathesis against the served OpenAPI document, on a throwaway stack
	@bash scripts/fuzz.sh

bench: ## fan-out benchmark against a naive baseline and a direct ceiling (release build)
	@bash scripts/bench.sh

lint: ## formatting and clippy, as CI runs them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

record-histories: ## re-record the workflow histories the replay tests use
	@bash scripts/record-histories.sh
