"""The package's imports: the layers of ``.importlinter`` kept, and no import cycle anywhere."""

from pathlib import Path

import grimp
from importlinter.application import use_cases
from importlinter.configuration import configure

CONFIG = Path(__file__).resolve().parents[1] / ".importlinter"


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """Every direct import ``(a, b)`` of the graph through which ``b`` leads back to ``a``."""
    return sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )


def test_every_import_contract_is_kept(capsys):
    configure()  # what the lint-imports command does first: the readers of config files, the graph builder
    passed = use_cases.lint_imports(str(CONFIG), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert passed, report
    assert "Contracts: 2 kept, 0 broken." in report


def test_no_module_of_swinkit_imports_itself_back():
    graph = grimp.build_graph("swinkit", cache_dir=None)
    assert {"swinkit.model.swin", "swinkit.cli", "swinkit.bench.models", "swinkit.train.loop"} <= graph.modules
    assert cycles(graph) == []
    # The check finds a cycle where there is one: the model importing the command line closes many.
    graph.add_import(importer="swinkit.model.ops", imported="swinkit.cli")
    assert ("swinkit.model.ops", "swinkit.cli") in cycles(graph)
