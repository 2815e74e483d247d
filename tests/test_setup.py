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


def test_pseudo_families_installed_once(aiida_profile):
    """Debian's UPF files as aiida-pseudo families with cutoffs per stringency; a second run changes nothing."""
    from aiida_grimperium import pseudos
    from aiida_grimperium.cli.cmd_setup import install_pseudo_families

    install_pseudo_families(echo=lambda _: None)
    family = pseudos.load_family(pseudos.family_label('pbe'))
    count = len(family.nodes)
    assert install_pseudo_families(echo=lambda _: None) == {'Debian/QE/PBE': 'exists', 'Debian/QE/PZ': 'exists'}
    assert len(family.nodes) == count and family.get_pseudo('H').filename == 'H.pbe-kjpaw.UPF'
    assert type(family.get_pseudo('H')).__name__ == 'UpfData' and family.get_pseudo('H').z_valence == 1
    # low: the former `fast` cutoffs; normal/high: at least what the UPF file states (46/201 Ry for H.pbe-kjpaw)
    text = (pseudos.DEFAULT_PSEUDO_DIR / 'H.pbe-kjpaw.UPF').read_text()
    assert 'Suggested minimum cutoff for wavefunctions:  46. Ry' in text
    assert family.get_recommended_cutoffs(elements=('H',), stringency='low', unit='Ry') == (20.0, 160.0)
    assert family.get_recommended_cutoffs(elements=('H',), stringency='normal', unit='Ry') == (46.0, 368.0)
    assert family.get_recommended_cutoffs(elements=('Si',), stringency='normal', unit='Ry') == (30.0, 240.0)


def test_pseudo_family_recorded_as_default(aiida_profile):
    from aiida_grimperium import pseudos
    from aiida_grimperium.cli.cmd_setup import install_pseudo_families

    install_pseudo_families('Debian/QE/PZ', echo=lambda _: None)
    assert pseudos.default_family_label() == 'Debian/QE/PZ'
    install_pseudo_families('Debian/QE/PBE', echo=lambda _: None)
    assert pseudos.default_family_label() == 'Debian/QE/PBE'
    import pytest
    with pytest.raises(ValueError, match='not installed'):
        pseudos.set_default_family('SSSP/1.3/PBE/efficiency')
