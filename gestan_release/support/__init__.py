"""The support desk: forum reports taken in, acknowledged, and Gestan's promises measured."""
