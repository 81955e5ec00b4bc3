"""The shape of the code: src/ imports only downwards and in no circle, holds no programs, and the
model files carry nothing of the CPU kernels."""
import ast
import os

from fixtures import REPO_ROOT

SRC = os.path.join(REPO_ROOT, "src")
# Each part of src/ may import the parts of its own rank or below.
RANKS = {"errors": 0, "fileio": 1, "interrupts": 1, "cli": 2, "config": 3,
         "device": 4, "checkpoint": 4, "data": 4, "model": 4, "prepare": 4, "demo_corpus": 4, "launch": 4,
         "kernels": 5, "evaluation": 6, "speakers": 6, "inference": 6, "interop": 6, "train": 7}


def _modules():
    """{module name: parsed source} of every module under src/."""
    found = {}
    for folder, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                with open(path, encoding="utf-8") as handle:
                    found[module] = ast.parse(handle.read())
    return found


def _imports(tree, modules):
    """The src modules a module imports (``from src.model import ecapa_tdnn`` names the submodule)."""
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "src":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                imported.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.split(".")[0] == "src")
    return imported


def _part(module):
    return module.split(".")[1] if "." in module else "src"


def test_every_part_of_src_has_a_rank_and_imports_only_its_rank_or_below():
    modules = _modules()
    assert {_part(module) for module in modules} - {"src"} == set(RANKS)
    upward = [f"{module} -> {target}" for module, tree in modules.items() for target in _imports(tree, modules)
              if _part(module) != "src" and RANKS[_part(target)] > RANKS[_part(module)]]
    assert upward == []


def test_no_module_of_src_imports_itself_through_others():
    modules = _modules()
    graph = {module: {target for target in _imports(tree, modules) if target in modules and target != module}
             for module, tree in modules.items()}
    state, circles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_src_holds_no_program_and_edits_no_import_path():
    for module, tree in _modules().items():
        source = ast.unparse(tree)
        assert "__main__" not in source and "sys.path" not in source, module


def test_the_model_files_carry_no_kernel_hooks():
    hooks = ("kernel_products", "kernel_time_max", "inference_kernel", "training_kernel", "input_block",
             "accepts_frame_mask", "src.kernels")
    for name in os.listdir(os.path.join(SRC, "model")):
        if name.endswith(".py"):
            with open(os.path.join(SRC, "model", name), encoding="utf-8") as handle:
                source = handle.read()
            assert [hook for hook in hooks if hook in source] == [], name
