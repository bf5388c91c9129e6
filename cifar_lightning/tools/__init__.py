"""The verbs that read run folders and configs: report, compare, lr-find."""
