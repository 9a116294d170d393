"""What every layer shares: validation of text from outside, the secret scrubber, the one
retry policy of every peer, and the progress interface of long work."""
