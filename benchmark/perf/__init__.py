"""``forgetbench perf``: how close the harness is to a plain PyTorch loop, and what regularizers cost.

Pure measurement functions returning JSON-ready dicts. Every comparison runs both sides in one
process, alternating their order from repeat to repeat, and reports medians; ratios are
``harness / plain`` (or ``strategy / naive``), so 1.0 means "no overhead".

The default measurements (keys of the JSON object), each in its own module of :mod:`.measurements`:

* ``harness_vs_plain``: the harness's ``naive`` run (strategy built through the registry, with the
  runner's harness plugins) against a hand-written loop doing identical work: same initial
  weights, same data order (the same seeded generator), batch size, optimizer and steps. Both
  must end with the same weights (``weights_equal``), else the comparison is void.
* ``step_overhead``: time per training step of each regularizer (the quadratic ``ewc``, ``si``, ``wpl``, ``mas``,
  ``l2``, and ``lwf``'s distillation) over ``naive`` on the same Split task stream, counted over experiences 1..T-1 (where the penalties are
  active), excluding the once-per-experience importance pass; ``importance_vs_epoch``: the ``after_training_exp``
  work (the importance pass) over one training epoch of the same experience.
* ``fisher_fast_vs_loop``: ``forgetbench.strategies.importance.exact_fisher_diagonal`` against
  ``per_sample_fisher_loop`` on the same samples (speed-up = loop time / fast time).
* ``growth``: per-step time and regularizer memory (``state_bytes``) for T = 5, 10, 20 experiences.
* ``parallel_scaling``: what N worker processes gain over ``local`` on identical runs, and the most
  they could gain. The same K whole runs (``forgetbench.benchmark.run.runner.run`` of ``naive`` on the Split MNIST
  MLP of ``configs/split_mnist.yaml``: scenario, training, evaluation) run one after another in
  this process with one torch thread per core (what ``local`` does), then spread over N worker
  processes with ``cores // N`` threads each (what ``process``/``ray`` with ``--workers N`` do),
  workers started and warmed up beforehand: ``speedup = local seconds / parallel seconds``. Also
  one run alone on one worker (``cores // N`` threads, the other workers idle): if N workers ran each as fast as alone (perfect
  scaling, no start-up), the speed-up would be ``bound = N x local run / lone run``; when
  ``local`` already gains from its extra threads, the bound is below N. It ignores ``--threads``:
  the thread counts are the point.
* ``recurrent_supernet``: the ENAS recurrent supernet's turns (:mod:`.measurements.recurrent_supernet`).
* ``suite_overhead``: the demo suite's wall against its runs' own training and evaluation seconds
  (:mod:`forgetbench.benchmark.perf.measurements.suite_overhead`).
* ``sequence_model``: EWC's and WPL's train time on a GRU against naive's, with the unrolled per-sample Fisher and
  with the fallback it replaced (:mod:`forgetbench.benchmark.perf.measurements.sequence_model`).
* ``avalanche_vs_own_loop``: forgetbench's run of Avalanche's GEM, AGEM, DER and ER_ACE against Avalanche's own
  class and loop on the same work (:mod:`forgetbench.benchmark.perf.measurements.avalanche_vs_own_loop`).

The other measurements of that one registry (the probes behind single figures of docs/studies/) run when ``--only``
names them, in the order named, with their ``--set`` params. :mod:`.timing` times the report on synthetic records.
Nothing else in the library imports this package; only the CLI's ``perf`` command does, when it is called.
"""
