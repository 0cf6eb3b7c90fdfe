"""The driver profiler of benchmarks/nightly_scale.py --profile charges wall time to the stage
module on the stack and to the innermost project line with the call it waits on."""
import time

from benchmarks.profiler import ROOT, Sampler

# a function whose code says it lives in a stage module (the profiler goes by the file name)
STAGE_SOURCE = '''
import time

def work(seconds):
    time.sleep(seconds)
'''


def test_the_sampler_charges_a_stage_and_the_call_it_waits_on():
    ns: dict = {}
    exec(compile(STAGE_SOURCE, str(ROOT / "jobs" / "mine_rules.py"), "exec"), ns)
    with Sampler(interval=0.01) as sampler:
        ns["work"](0.6)
        time.sleep(0.3)                                   # outside any project code
    seconds = sampler.seconds_of(sampler.stages)
    assert 0.5 <= seconds["mine_rules"] <= 0.7, seconds        # the real gaps between looks
    assert "(outside a stage)" in seconds                  # the test's own sleep, no project frame
    (site, n), = [(k[1], v) for k, v in sampler.sites.items() if k[0] == "mine_rules"]
    assert site == "jobs/mine_rules.py:5 work" and n == sampler.stages["mine_rules"]      # one site
    lines = sampler.report()
    assert any(line.startswith("mine_rules: ") for line in lines)
    assert sampler.to_json()["stages"]["mine_rules"] == seconds["mine_rules"]
