"""Orchestration over the stages: the pipeline file, the sweep, the quickstart, the live check.

- ``stages``: train -> export -> validate (-> check), the functions every flow calls;
- ``pipeline``: ``edgetransfer run PIPELINE.yaml`` (fingerprinted stages, skipped when unchanged);
- ``sweep``: the model search (backbone x size x precision), resumable; ``grid`` checks the
  grid before any work; ``picks`` writes the pipeline file of each target's pick; ``pareto``:
  the pure front / pick / excess rules;
- ``check``: the live CI check, measure then judge;
- ``quickstart``: the embedded default, a pipeline file built in code.

Nothing is re-exported here: ``edgetransfer.sweep`` is the public function, and a name in this
package would hide the submodule of the same name.
"""
