"""The real benchmark files the data tests read, shared by the reader and CLI tests."""

# (file, format, records) as listed in ../shared/data/README.md
SHARED_FILES = [
    ("knowedit/ZsRE-test-all.json", "knowedit_zsre", 1304),
    ("knowedit/wikibio-test-all.json", "knowedit_wikibio", 306),
    ("knowedit/wiki_counterfact-train_cf.json", "knowedit_counterfact", 1428),
    ("knowedit/wiki_recent-recent_train.json", "knowedit_recent", 570),
    ("knowedit/wikibio-train-all.json", "knowedit_wikibio", 464),
    ("counterfact/counterfact-train.json", "counterfact", 10000),
    ("counterfact/counterfact-val.json", "counterfact", 1919),
    ("counterfact/counterfact-edit.json", "counterfact", 10000),
    ("counterfact/counterfact-edit-1k.json", "counterfact", 1000),
    ("zsre/zsre_mend_train-1k.json", "mend_zsre", 1000),
]
