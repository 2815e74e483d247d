"""``LinkedOutputsMemo``: AiiDA's per-state-change output query only runs when a process has a new output."""
from __future__ import annotations

from aiida import orm
from aiida.engine import Process, run_get_node

from aiida_grimperium.structures import structure_from_smiles
from aiida_grimperium.workchains.mopac import MopacBaseWorkChain


def test_outputs_linked_as_before_with_far_fewer_queries(real_code, monkeypatch):
    calls = {'memo': 0, 'aiida': 0}
    aiida_update_outputs = Process.update_outputs

    def counting(self):
        calls['aiida'] += 1
        return aiida_update_outputs(self)

    from aiida_grimperium.processes import LinkedOutputsMemo

    memo_update_outputs = LinkedOutputsMemo.update_outputs

    def counting_memo(self):
        calls['memo'] += 1
        return memo_update_outputs(self)

    monkeypatch.setattr(Process, 'update_outputs', counting)
    monkeypatch.setattr(LinkedOutputsMemo, 'update_outputs', counting_memo)
    code = real_code('mopac', 'grimperium.mopac')
    builder = MopacBaseWorkChain.get_builder_from_protocol(code, structure_from_smiles('CO'), 'fast')
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    calc = node.called[0]
    expected = {'output_parameters', 'output_structure', 'remote_folder', 'retrieved'}
    assert set(calc.outputs) == expected and set(node.outputs) == expected
    # every output of the workchain is the calculation's own node, linked once by each process
    for label in expected:
        assert node.outputs[label].uuid == calc.outputs[label].uuid
    assert calls['memo'] >= 12  # the state changes of the workchain and its CalcJob
    assert calls['aiida'] <= calls['memo'] / 2, calls  # only the changes that bring a new output query

