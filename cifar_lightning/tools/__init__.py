"""The verbs that read run folders and configs: report, compare, retest, lr-find."""
