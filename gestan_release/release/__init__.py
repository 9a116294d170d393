"""A release step by step: the runbook (the order of the steps), the plan, the notes and
messages, each side effect once through the ledger, the release lock."""
