"""No selection on the test split, enforced: nothing in the package or the notebooks picks a best value (σ*, a
default, a recipe, a checkpoint) by looking at test numbers. Selection reads validation columns; test numbers are
only reported.

The check is textual on purpose: any line that applies a selection operation (argmax, idxmax, nlargest, ...) and
mentions the test split fails, wherever it is, so a new notebook cell cannot slip one in.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELECTING = re.compile(r"\b(idxmax|idxmin|argmax|argmin|nlargest|nsmallest)\b|\bbest\b|\bselect\w*\(")
TEST_SPLIT = re.compile(r"test_accuracy|probe_accuracy_test|knn_accuracy_test|splits\.test|\"test\"|'test'|_test\b")


# max()/min() with a key picks a winner too; on a line that does not name validation it is suspect
KEYED_PICK = re.compile(r"\b(max|min|sorted)\([^#]*key=")
VALIDATION = re.compile(r"\bval(idation)?\b|val_|_val\b")


def offending_lines(paths):
    found = []
    for path in paths:
        # notebooks and analysis modules read result tables; elsewhere (e.g. bench's fastest GEMM probe) a keyed
        # max picks no result
        reads_results = path.parent.name == "notebooks" or "analysis" in path.name
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if (SELECTING.search(code) and TEST_SPLIT.search(code)) or (
                    reads_results and KEYED_PICK.search(code) and "best" in code and not VALIDATION.search(code)):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_line_selects_on_the_test_split():
    paths = sorted((ROOT / "synthstudy").rglob("*.py")) + sorted((ROOT / "notebooks").glob("*.py"))
    assert offending_lines(paths) == []


def test_the_check_catches_a_planted_selection(tmp_path):
    planted = tmp_path / "notebooks" / "nb.py"
    planted.parent.mkdir()
    planted.write_text("sigma_star = table.groupby('sigma')['probe_accuracy_test'].mean().idxmax()\n"
                       "best = summary.loc[summary['val_accuracy'].idxmax()]\n"
                       "best = max(by_sigma, key=lambda s: by_sigma[s].mean())\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert len(offending_lines([planted])) == 2          # the validation one is fine
    finally:
        ROOT = saved
