"""Download, verify and convert real data sets (one module per corpus; checksums in each)."""
