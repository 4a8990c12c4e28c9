from lacy_labels.corpus import iter_wiki_docs, wiki_json_path


def test_shipped_corpus_has_all_leads():
    docs = list(iter_wiki_docs())
    assert len(docs) == 10_033
    assert len({d["id"] for d in docs}) == len(docs)
    assert all(d["text"].strip() for d in docs)
    assert wiki_json_path().name == "summaries_en-us.json"


def test_limit_and_offset_are_stable():
    first = list(iter_wiki_docs(limit=5))
    assert len(first) == 5
    assert [d["id"] for d in first] == sorted(d["id"] for d in first)
    assert list(iter_wiki_docs(limit=2, offset=3)) == first[3:5]
