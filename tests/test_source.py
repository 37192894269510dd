import inspect

import pytest

import helpers as H
from helpers import regularizers
from helpers.source import source_lines


def test_whole_function_with_its_file_and_line_numbers():
    lines, first, path = source_lines(H.total_variation)
    real, real_first = inspect.getsourcelines(regularizers.total_variation)
    assert path == "helpers/regularizers.py"
    assert first == real_first
    assert lines == [line.rstrip("\n") for line in real]


def test_excerpt_from_start_to_stop_inclusive():
    lines, first, _ = source_lines(H.total_variation, start="def total_variation", stop="return")
    assert lines[0].startswith("def total_variation")
    assert "return" in lines[-1]
    assert sum("return" in line for line in lines) == 1
    _, whole_first = inspect.getsourcelines(regularizers.total_variation)
    assert first >= whole_first


def test_markdown_is_a_dedented_fenced_block_headed_by_the_line_range():
    lines, first, _ = source_lines(H.total_variation, start="return")
    text = H.show_source(H.total_variation, start="return").data
    assert text.startswith("```python\n")
    body = text.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
    assert body.splitlines()[0] == f"# helpers/regularizers.py, lines {first}–{first + len(lines) - 1}"
    assert body.splitlines()[1] == lines[0].lstrip()


def test_missing_marker_is_a_clear_error():
    with pytest.raises(ValueError, match="not in the source of total_variation"):
        source_lines(H.total_variation, start="no such text")
    with pytest.raises(ValueError, match="does not occur"):
        source_lines(H.total_variation, start="def", stop="no such text")


def test_a_decorated_function_shows_its_own_file_and_lines():
    import inspect

    import helpers as H
    from helpers.source import source_lines

    lines, first, path = source_lines(H.capture_activations, "def make_hook", "return hook")
    assert path == "helpers/hooks.py"
    real, start = inspect.getsourcelines(inspect.unwrap(H.capture_activations))
    assert lines[0] == real[first - start].rstrip("\n") and "def make_hook" in lines[0]
