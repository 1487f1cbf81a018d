from codesearch.lexical import identifier_tokens, lexical_text


def test_camel_snake_and_acronyms_split():
    assert identifier_tokens("parseJSONFile") == ["parse", "json", "file", "parsejsonfile"]
    assert identifier_tokens("read_all_lines") == ["read", "all", "lines", "read_all_lines"]
    assert identifier_tokens("HTTPServer2") == ["http", "server", "2", "httpserver2"]


def test_query_and_code_meet_on_the_same_tokens():
    code = set(identifier_tokens("def parseJson(text): return json.loads(text)"))
    assert {"parse", "json"} <= code
    assert lexical_text("Parse JSON") == "parse json"


def test_punctuation_dropped_and_non_ascii_identifiers_kept_whole():
    assert identifier_tokens("a->b; Größe_berechnen €") == ["a", "b", "größe", "berechnen", "größe_berechnen"]
