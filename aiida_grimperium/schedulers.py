"""``grimperium.slurm``: AiiDA's SLURM scheduler with an exactly-once ``sbatch``.

AiiDA records a job id on the CalcJob node right after ``sbatch`` returns and skips the submission when one is
recorded. A daemon worker killed (``kill -9``, OOM killer, node reboot) between ``sbatch`` returning and that
record leaves a submitted job that AiiDA does not know about; the next worker submits it again, and the same
calculation runs twice. The crash test (``tests/test_crash_recovery.py``) hits this window with core.slurm.

Here the shell on the cluster keeps ``sbatch``'s answer in the job's own working directory
(:data:`SUBMITTED_MARKER`), in the same command: the shell finishes even when the worker that started it dies.
A second submission of the same CalcJob (same working directory; a restart is always a new CalcJob with a new
directory) then returns the recorded job id instead of calling ``sbatch``.
"""
from __future__ import annotations

from aiida.schedulers.plugins.slurm import SlurmScheduler

#: File in the job's working directory holding ``sbatch``'s output ("Submitted batch job N").
SUBMITTED_MARKER = '.grimperium-sbatch'


class IdempotentSlurmScheduler(SlurmScheduler):
    """SLURM, where submitting the same working directory twice gives the first job's id back."""

    def _get_submit_command(self, submit_script: str) -> str:
        sbatch = super()._get_submit_command(submit_script)
        # -s: a marker left empty by a failed sbatch does not count; $? is sbatch's, so errors still reach AiiDA
        return (f'if [ -s {SUBMITTED_MARKER} ]; then cat {SUBMITTED_MARKER}; '
                f'else {sbatch} > {SUBMITTED_MARKER}; status=$?; cat {SUBMITTED_MARKER}; exit $status; fi')
