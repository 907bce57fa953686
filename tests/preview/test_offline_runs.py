from __future__ import annotations

import pickle

from etcd_stack.preview import offline


def test_a_run_leaves_picklers_as_it_found_them(raw_config):
    # pulumi's serialize_provider wraps pickle._Pickler._batch_setitems once per dynamic resource and never
    # unwraps it; without the restore a long test session ends in RecursionError.
    before = (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict, pickle.Pickler)
    run = offline.run(raw_config(), "test")
    assert run.of_type("pulumi-python:dynamic:Resource"), "the stack registers dynamic resources"
    assert (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict, pickle.Pickler) == before
