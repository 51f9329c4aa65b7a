from collections import namedtuple

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])
all_samplers = [
    SamplerData("DPM++ 2M", None, ["k_dpmpp_2m"], {}),
    SamplerData("Euler a", None, ["k_euler_a"], {}),
    SamplerData("Euler", None, ["k_euler"], {}),
    SamplerData("DDIM", None, [], {}),
]
all_samplers_map = {x.name: x for x in all_samplers}
samplers = all_samplers
samplers_for_img2img = all_samplers
samplers_map = {}
for s in all_samplers:
    samplers_map[s.name.lower()] = s.name
    for alias in s.aliases:
        samplers_map[alias.lower()] = s.name


def find_sampler_config(name):
    if name is not None:
        config = all_samplers_map.get(name, None)
    else:
        config = all_samplers[0]
    return config


def visible_sampler_names():
    return [x.name for x in samplers]
