"""What speaks to Prefect: running a flow in this process, flow-run results and states, the
cockpit (progress artifacts, approval, events), the console while a run goes, Secret blocks."""
