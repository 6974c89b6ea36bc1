"""rc.d/hasvc must be valid sh, lint-clean, and follow rc.subr(8) conventions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "rc.d" / "hasvc"
DEVD = ROOT / "rc.d" / "devd-hasvc.conf"


def test_sh_syntax() -> None:
    res = subprocess.run(["sh", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_shellcheck_clean() -> None:
    # A missing linter must fail the run: skipping would pass a script nobody checked.
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed; it is required for this test"
    res = subprocess.run([shellcheck, "-s", "sh", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_shellcheck_disables_carry_a_reason() -> None:
    lines = SCRIPT.read_text().splitlines()
    for i, line in enumerate(lines):
        if "shellcheck disable=" in line:
            has_reason = "#" in line.split("shellcheck disable=", 1)[1] or (
                i > 0 and lines[i - 1].lstrip().startswith("#") and "shellcheck" not in lines[i - 1])
            assert has_reason, f"line {i + 1}: disable without a reason"


def test_rc_header() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert re.search(r"^# PROVIDE: hasvc$", text, re.M)
    require = re.search(r"^# REQUIRE: (.*)$", text, re.M)
    assert require
    for dep in ("NETWORKING", "syslogd", "devd"):
        assert dep in require.group(1).split()
    assert re.search(r"^# KEYWORD: .*\bshutdown\b", text, re.M)


def test_rc_variables() -> None:
    text = SCRIPT.read_text()
    for needle in (
        ". /etc/rc.subr",
        'name="hasvc"',
        'rcvar="hasvc_enable"',
        'load_rc_config "$name"',
        ": \"${hasvc_enable:=NO}\"",
        ": \"${hasvc_config:=/usr/local/etc/hasvc/hasvc.yaml}\"",
        "hasvc_flags",
        'pidfile="/var/run/${name}.pid"',
        'sig_reload="HUP"',
        'extra_commands="reload check"',
        'check_cmd="hasvc_check"',
        'start_precmd="hasvc_prestart"',
        'run_rc_command "$1"',
    ):
        assert needle in text, needle


def test_daemon_records_the_child_pid() -> None:
    """-p (child) not -P (supervisor): reload's SIGHUP must reach hasvc itself."""
    text = SCRIPT.read_text()
    assert 'command="/usr/sbin/daemon"' in text
    args = re.search(r'^command_args="(.*)"$', text, re.M)
    assert args
    argv = args.group(1).split()
    assert argv[:2] == ["-f", "-p"] and argv[2] == "${pidfile}"
    assert "-S" in argv and argv[argv.index("-T") + 1] == "${name}"
    assert "-r" not in argv
    assert argv[argv.index("${procname}") + 1:argv.index("${procname}") + 4] == ["-c", "${hasvc_config}", "run"]


def test_check_runs_hasvc_check() -> None:
    text = SCRIPT.read_text()
    body = re.search(r"^hasvc_check\(\)\n\{\n(.*?)^\}", text, re.M | re.S)
    assert body and '"${procname}" -c "${hasvc_config}" check' in body.group(1)
    pre = re.search(r"^hasvc_prestart\(\)\n\{\n(.*?)^\}", text, re.M | re.S)
    assert pre and "hasvc_precheck || return 1" in pre.group(1)


def test_devd_snippet() -> None:
    text = DEVD.read_text()
    assert re.search(r'match "system"\s+"CARP";', text)
    assert re.search(r'match "subsystem"\s+"\[0-9\]\+@\[0-9a-z\.\]\+";', text)
    assert re.search(r'match "type"\s+"\(MASTER\|BACKUP\|INIT\)";', text)
    assert 'action "/usr/local/bin/hasvc notify $subsystem $type --source devd";' in text
    assert text.count("{") == text.count("}")
