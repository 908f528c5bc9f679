"""README's "Using it" section agrees with the command line: every command and option it shows
exists (in ``tuneprint COMMAND --help``), with the defaults it states, the exit codes it names and
the port it curls; and each ``--help`` states the defaults the parser really has."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tuneprint.server.cli import EXIT_LIBRARY, EXIT_PARTIAL, EXIT_USAGE, build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def using_it() -> str:
    text = README.read_text()
    start = text.index("## Using it")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def shown_invocations() -> list[tuple[str, str]]:
    """(command, the rest of its line, comment included) for every ``tuneprint COMMAND`` the
    section shows, in code blocks and in inline code."""
    return re.findall(r"(?:^|`)tuneprint ([a-z]+)([^`\n]*)", using_it(), re.M)


def commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def actions(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The actions of a command that has them (``classify train``, ``classify predict``)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subs[0].choices) if subs else {}


def every_parser() -> dict[str, argparse.ArgumentParser]:
    """Every command, and every action of a command as "command action"."""
    found = {}
    for name, parser in commands().items():
        found[name] = parser
        found.update({f"{name} {action}": p for action, p in actions(parser).items()})
    return found


def parser_for(command: str, rest: str) -> argparse.ArgumentParser:
    """The parser a shown invocation reaches: the command's, or its action's when the line names one."""
    parser = commands()[command]
    first = rest.split()[0] if rest.split() else ""
    return actions(parser).get(first, parser)


def action(parser: argparse.ArgumentParser, option: str) -> argparse.Action:
    (found,) = [a for a in parser._actions if option in a.option_strings]
    return found


def test_every_command_is_shown_and_every_shown_command_exists():
    shown = {command for command, _ in shown_invocations()}
    assert shown == set(commands())


@pytest.mark.parametrize("command,rest", shown_invocations(), ids=lambda x: x if len(x) < 20 else x[:20])
def test_shown_options_exist_with_their_defaults(command, rest):
    parser = parser_for(command, rest)
    help_text = parser.format_help()  # what `tuneprint COMMAND [ACTION] --help` prints
    for option in OPTION.findall(rest):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text), f"{command} has no {option}"
    for option, value in re.findall(r"\[(--?[\w-]+) ([^\]\s]+)\]", rest):
        if value.isupper():  # a placeholder (SECRET), not a default
            continue
        default = action(parser, option).default
        assert type(default)(value) == default, f"README says {command} {option} defaults to {value}, the parser {default}"


def test_options_named_in_prose_exist():
    """Options in the section's sentences (``--index``, ``--json``, ``--out``) belong to some command."""
    helps = "\n".join(p.format_help() for p in every_parser().values())
    prose = re.sub(r"```.*?```", "", using_it(), flags=re.S)
    for option in set(re.findall(r"`(--[\w-]+)", prose)):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helps), option
    json_commands = re.search(r"`--json` makes (.+?) print", prose, re.S).group(1)
    for command in re.findall(r"`([a-z]+)`", json_commands):
        assert "--json" in commands()[command].format_help(), command


def test_curl_port_is_the_serve_default():
    port = action(commands()["serve"], "--port").default
    assert {int(p) for p in re.findall(r"localhost:(\d+)", README.read_text())} == {port}


def test_exit_codes_in_the_readme():
    section = using_it()
    named = {int(m.group(1)): re.sub(r"\s+", " ", m.group(2))
             for m in re.finditer(r"(\d):\s+(some\s+inputs\s+were\s+bad|bad\s+usage|the\s+library\s+could\s+not)", section)}
    assert named == {EXIT_PARTIAL: "some inputs were bad", EXIT_USAGE: "bad usage", EXIT_LIBRARY: "the library could not"}


@pytest.mark.parametrize("command", sorted(every_parser()))
def test_help_states_the_parser_defaults(command):
    """A "(default X)" in an option's help is the default the parser really uses."""
    for a in every_parser()[command]._actions:
        stated = re.search(r"\(default:? ([^;),\s]+)", a.help or "")
        if stated is None or a.default is None or isinstance(a.default, bool):
            continue
        value = stated.group(1)
        if isinstance(a.default, (int, float)):
            try:
                value = float(value)
            except ValueError:  # words ("as they are"): nothing to compare
                continue
            assert value == a.default, (command, a.option_strings, value, a.default)
        else:
            assert value == str(a.default), (command, a.option_strings, value, a.default)
