"""LocalSandboxRuntime.remove_files removes the paths themselves: a symlink goes, never what it points to."""

from pathlib import Path

import pytest

from buildlogs.pipeline.sandbox import LocalSandboxRuntime


async def started(tmp_path: Path) -> LocalSandboxRuntime:
    runtime = LocalSandboxRuntime(workdir=tmp_path / "sandboxes")
    await runtime.start()
    return runtime


async def test_deleting_a_symlink_removes_the_link_not_its_target(tmp_path: Path) -> None:
    # GIVEN a workspace with real.txt, a link to it, and a link to a file outside the workspace
    runtime = await started(tmp_path)
    workspace = Path(runtime.workspace)
    (workspace / "real.txt").write_text("kept")
    (workspace / "inside.txt").symlink_to(workspace / "real.txt")
    outside = tmp_path / "outside.txt"
    outside.write_text("kept too")
    (workspace / "outside-link.txt").symlink_to(outside)
    # WHEN both links are deleted
    await runtime.remove_files(["inside.txt", "outside-link.txt"])
    # THEN the links are gone and both targets are untouched
    assert not (workspace / "inside.txt").is_symlink()
    assert not (workspace / "outside-link.txt").is_symlink()
    assert (workspace / "real.txt").read_text() == "kept"
    assert outside.read_text() == "kept too"
    await runtime.kill()


async def test_a_path_whose_directory_leads_outside_is_refused(tmp_path: Path) -> None:
    # GIVEN a directory link leading out of the workspace
    runtime = await started(tmp_path)
    workspace = Path(runtime.workspace)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim.txt").write_text("x")
    (workspace / "door").symlink_to(elsewhere, target_is_directory=True)
    # WHEN a file behind it is deleted THEN it is refused and the file stays
    with pytest.raises(ValueError, match="outside the workspace"):
        await runtime.remove_files(["door/victim.txt"])
    assert (elsewhere / "victim.txt").exists()
    await runtime.kill()
