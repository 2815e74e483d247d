"""``grimperium setup``'s transport setting: a ``core.local`` computer runs its commands without a login shell."""
from __future__ import annotations

import uuid

from aiida import orm

from aiida_grimperium.cli.cmd_setup import plain_local_shell


def new_computer(transport: str) -> orm.Computer:
    return orm.Computer(label=f'test-{uuid.uuid4().hex[:8]}', hostname='localhost', transport_type=transport,
                        scheduler_type='core.direct', workdir='/tmp/grimperium-test-{username}').store()


def test_local_computer_runs_commands_without_login_shell(aiida_profile):
    computer = new_computer('core.local')
    computer.configure(safe_interval=0.0)
    messages = []
    assert plain_local_shell(computer.label, echo=messages.append) is True
    assert computer.get_configuration() == {'safe_interval': 0.0, 'use_login_shell': False}  # the rest is kept
    assert messages and 'without a login shell' in messages[0]
    with computer.get_transport() as transport:
        # what the daemon runs for a submission or a scheduler poll: a plain `bash -c`, and it works
        assert transport._bash_command_str == 'bash '
        status, stdout, _ = transport.exec_command_wait('echo $0 ok')
        assert (status, stdout.split()) == (0, ['bash', 'ok'])
    assert plain_local_shell(computer.label, echo=messages.append) is False  # the second time: nothing to do
    assert len(messages) == 1


def test_unconfigured_local_computer_is_configured(aiida_profile):
    computer = new_computer('core.local')
    assert plain_local_shell(computer.label, echo=lambda _: None) is True
    assert computer.get_configuration() == {'use_login_shell': False}


def test_remote_computers_are_left_alone(aiida_profile):
    computer = new_computer('core.ssh')
    assert plain_local_shell(computer.label, echo=lambda _: None) is False
    assert not computer.is_configured
