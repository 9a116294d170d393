"""Git and what commits say: the one place that runs git, the ticket rules as data, the fast
reading of a range, the stories of `--explain`, and the version scheme."""
