"""What a command shows on the terminal: step lines, live bars, the summary, or JSON."""
