"""The X/Y/Z plot script's job accounting and cell loop (A1111 1.10.1 scripts/xyz_grid.py,
the same in Forge 2 and the October 2025 Neo at their own lines): before any cell it sets the
console's total to every cell's steps (A1111 :648-675, Forge 2 :699, Neo :698) and the job count
to cells * n_iter (draw_xyz_grid, A1111 :296, Forge 2 :320, Neo :319); then each cell is a copy
of the job with its axis values applied, run by process_images (A1111 :707-728, Forge 2 :752,
Neo :751). Only the parts that touch the host's bar; no grid is drawn."""

from copy import copy


def run(p, cells):
    """Run one cell per entry of `cells` (each a function applying its axis values to the
    cell's copy of `p`), as an X axis of len(cells) values; the cells' Processed."""
    from modules import processing, shared  # the fixture's own modules (it reloads them)

    state = shared.state
    total_steps = p.steps * len(cells)  # no Steps axis (:655)
    if isinstance(p, processing.StableDiffusionProcessingTxt2Img) and p.enable_hr:
        if p.hr_second_pass_steps:  # :664-667
            total_steps += p.hr_second_pass_steps * len(cells)
        else:
            total_steps *= 2
    total_steps *= p.n_iter  # :669
    if hasattr(shared, "total_tqdm"):
        shared.total_tqdm.updateTotal(total_steps)  # :675
    state.job_count = len(cells) * p.n_iter  # draw_xyz_grid :296
    results = []
    for ix, apply in enumerate(cells):
        state.job = f"{ix + 1} out of {len(cells)}"  # :304
        if state.interrupted or state.stopping_generation:  # cell() :708
            break
        pc = copy(p)
        pc.styles = (pc.styles or [])[:]
        apply(pc)
        results.append(processing.process_images(pc))  # :728
    return results
