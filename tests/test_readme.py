"""The README's Python examples call what the library has, with arguments it takes.

The examples use the reader's own data and models, so they are not run here;
each call into keras_transfer (`kt.…`, `adapt.…`, names imported from the
package, and methods of objects the example built from a keras_transfer class)
is resolved and its arguments bound to the real signature. A renamed function,
class, method or keyword breaks this test before it misleads a user.
"""

import ast
import importlib
import inspect
import os
import re

import pytest

import keras_transfer

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def python_examples():
    with open(README, encoding="utf-8") as file:
        text = file.read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def known_names(tree):
    """Names the example binds to keras_transfer objects: `import keras_transfer as kt`, `from …
    import`.
    """
    names = {"kt": keras_transfer}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_transfer"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                names[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_transfer"):
                    names[alias.asname or alias.name] = importlib.import_module(alias.name)
    return names


def resolve(expression, names, instances):
    """What an attribute chain such as `kt.adapt.mmd` or `distiller.fit` names, or None.

    Returns:
        (object, the chain as spelled, and for a method looked up on an
        instance's class that class: the call does not pass its `self`).
    """
    chain = []
    while isinstance(expression, ast.Attribute):
        chain.insert(0, expression.attr)
        expression = expression.value
    if not isinstance(expression, ast.Name):
        return None, "", None
    root = names.get(expression.id) or instances.get(expression.id)
    if root is None:
        return None, "", None
    spelled = ".".join([expression.id] + chain)
    target = root
    for attribute in chain:
        if not hasattr(target, attribute):
            if expression.id in instances:
                return None, "", None  # set in __init__: exists only on the instance
            raise AssertionError(f"README calls {spelled}: {attribute!r} does not exist")
        target = getattr(target, attribute)
    if expression.id in instances:
        return (target, spelled, root) if len(chain) == 1 else (None, "", None)
    return target, spelled, None


def passed_through(bound):
    """Keywords that landed in the signature's **kwargs."""
    for name, parameter in bound.signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return bound.arguments.get(name, {})
    return {}


def keywords_up_the_mro(cls, method):
    """Every keyword that `method` names in `cls` or a base class (Keras layers take name, dtype,
    ...).
    """
    named = set()
    for base in cls.__mro__:
        function = vars(base).get(method)
        if function is not None and callable(function):
            named.update(
                name
                for name, parameter in inspect.signature(function).parameters.items()
                if parameter.kind
                in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            )
    return named


def checked_calls(example):
    """Binds every resolvable call of one example; returns how many were checked."""
    tree = ast.parse(example)
    names, instances, count = known_names(tree), {}, 0
    for statement in tree.body:
        for node in ast.walk(statement):
            if not isinstance(node, ast.Call):
                continue
            target, spelled, owner_class = resolve(node.func, names, instances)
            if target is None or not callable(target):
                continue
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords
            ):
                continue
            try:
                arguments = ([None] if owner_class else []) + node.args
                bound = inspect.signature(target).bind(
                    *arguments, **{k.arg: k.value for k in node.keywords}
                )
            except TypeError as error:
                raise AssertionError(
                    f"README calls {spelled}({ast.unparse(node)[len(spelled) + 1 :]}: {error}"
                )
            # A constructor's or method's **kwargs go up the MRO; a plain function's cannot be
            # followed.
            owner, method = (
                (target, "__init__")
                if inspect.isclass(target)
                else (owner_class, spelled.rsplit(".", 1)[-1])
            )
            unknown = (
                set(passed_through(bound)) - keywords_up_the_mro(owner, method) if owner else ()
            )
            if unknown:
                raise AssertionError(
                    f"README calls {spelled} with {sorted(unknown)}, which no {method} of its "
                    f"classes names"
                )
            count += 1
        if isinstance(statement, ast.Assign):
            call = statement.value if isinstance(statement.value, ast.Call) else None
            built = resolve(call.func, names, instances)[0] if call else None
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    instances.pop(target.id, None)
                    if inspect.isclass(built):
                        instances[target.id] = built
    return count


@pytest.mark.parametrize("index", range(len(python_examples())))
def test_readme_example_calls_bind_to_the_library(index):
    example = python_examples()[index]
    assert checked_calls(example) > 0, (
        f"README example {index} calls nothing in keras_transfer:\n{example[:200]}"
    )


def test_a_wrong_keyword_in_an_example_is_caught():
    with pytest.raises(AssertionError, match="temprature"):
        checked_calls("import keras_transfer as kt\nkt.Distiller(t, s, temprature=4.0)\n")
    with pytest.raises(AssertionError, match="does not exist"):
        checked_calls("import keras_transfer as kt\nkt.distil(t, s)\n")
    with pytest.raises(AssertionError, match="epoch"):
        checked_calls("import keras_transfer as kt\nd = kt.Distiller(t, s)\nd.fit(x, y, epoch=5)\n")
    with pytest.raises(AssertionError, match="lamda"):
        checked_calls("from keras_transfer import adapt\nadapt.DANN(f, c, lamda=1.0)\n")
