"""The CLI as a user runs it: real processes, real files, one-line errors."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, write_video

COMMANDS = ["index", "search", "eval", "train", "import-checkpoint", "report", "accuracy", "bench", "build-moments", "eval-moments", "remove", "upgrade", "info"]


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "vtr_core", *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr[-2000:]}")
    return result


@pytest.fixture(scope="module")
def built_index(tmp_path_factory):
    """Red, green and blue clips indexed with the lite backbone through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    videos = root / "videos"
    videos.mkdir()
    for name, colour in {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 220)}.items():
        write_video(videos / f"{name}.mp4", num_frames=24, colour=colour)
    result = run("index", videos, "--index", root / "idx", "--backbone", "lite", "--frames", "4")
    assert "indexed 3 new" in result.stdout
    return root


def test_search_json_lines(built_index):
    queries = built_index / "queries.txt"
    queries.write_text("a red screen\n\n  a green field  \n")
    result = run("search", "--index", built_index / "idx", "--queries", queries, "--top-k", "2", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["a red screen", "a green field"]
    for line in lines:
        assert [hit["rank"] for hit in line["results"]] == [1, 2]
        assert {"video_id", "path", "score"} <= set(line["results"][0])
        assert line["results"][0]["score"] >= line["results"][1]["score"]
        assert line["results"][0]["path"].endswith(".mp4")
        assert {hit["video_id"] for hit in line["results"]} <= {"red", "green", "blue"}


def test_search_single_query_text_output(built_index):
    result = run("search", "--index", built_index / "idx", "something colourful", "--top-k", "3")
    assert result.stdout.count(".mp4") == 3


def test_info(built_index):
    info = json.loads(run("info", "--index", built_index / "idx", "--json").stdout)
    assert info["videos"] == 3 and info["backbone"] == "lite" and info["frames"] == 4
    assert info["patches_per_frame"] == 49 and info["disk_bytes"] > 0


def test_reindex_is_incremental(built_index):
    result = run("index", built_index / "videos", "--index", built_index / "idx", "--quiet")
    assert "indexed 0 new and 0 changed videos, 3 unchanged" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--index", "{idx}", "   "], "empty query"),
        (["search", "--index", "{root}/nowhere", "dog"], "no such directory"),
        (["search", "--index", "{root}/videos", "dog"], "is not a video index"),
        (["search", "--index", "{idx}", "dog", "--backbone", "clip:ViT-B-32/openai"],
         "was built with backbone lite (384-d), not clip:ViT-B-32/openai: use the index's own backbone, or re-index "
         "(--backbone)"),
        (["index", "{root}/videos", "--index", "{idx}", "--frames", "8"], "was built with num_frames=4; this run asks for num_frames=8: index into a new directory to change it (--frames)"),
        (["index", "{root}/videos", "--index", "{idx}", "--faiss", "HNSW32"],
         "was built with faiss_factory=auto; this run asks for faiss_factory=HNSW32: index into a new directory to "
         "change it (--faiss)"),
        (["index", "{root}/nowhere", "--index", "{root}/other"], "no such folder"),
        (["remove", "nothing", "--index", "{idx}"], "no video 'nothing'"),
        # the library names the setting; the command line adds the flags that set it
        (["search", "--index", "{idx}", "dog", "--method", "meanp", "--checkpoint", "{root}/head.pt", "--zero-shot"],
         "not both (--checkpoint / --zero-shot)"),
        (["index", "{root}/videos", "--index", "{root}/other", "--frames", "-1"], "--frames must be at least 1"),
    ],
)
def test_errors_are_one_line(built_index, args, message):
    args = [a.format(idx=built_index / "idx", root=built_index) for a in args]
    result = run(*args, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_failed_files_set_exit_status(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good.mp4", num_frames=10)
    (videos / "bad.mp4").write_text("not a video")
    result = run("index", videos, "--index", tmp_path / "idx", "--frames", "2", "--backbone", "lite", "--quiet",
                 check=False)
    assert result.returncode == 1
    assert "indexed 1 new" in result.stdout and "1 failed" in result.stdout
    assert "skipped:" in result.stderr and "bad.mp4: not a readable video" in result.stderr


def test_help_lists_the_commands_and_each_has_its_own(capsys):
    """`--help` is answered before anything heavy loads; the commands are listed in this order."""
    from vtr_core.cli import main

    result = run("--help")
    listed = [match[1] for match in re.finditer(r"^    (\S+) ", result.stdout, flags=re.MULTILINE)]
    assert listed == COMMANDS
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: python -m vtr_core {command} ")


def test_a_command_is_required():
    result = run(check=False)
    assert result.returncode == 2 and "the following arguments are required: command" in result.stderr
