"""Remote images for targets that need bytes: URL parsing, the SSRF address policy decided on the
address each socket connects to, and the capped, de-duplicated fetcher."""
