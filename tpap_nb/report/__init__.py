"""Every result sentence of the kit, rendered from records (nothing in them is typed): `from tpap_nb import report`.

The sentences sit above the experiments: they read what `evaluate`, `train` and `experiments.*` return, and
nothing imports them back. One module per notebook group, one set of shared words:

==============  ============================================================  ========
module          sentences                                                     notebook
==============  ============================================================  ========
words           numbers, changes, radii; the shown examples (`recovered_*`)   00-04
training        the tour, the recipe, the curves, the Sec. 3.2 test           00, 01
purification    Tab. 6 ablation, the xi sweep, Sec. 4.3's FGSM limitation      02
benchmark       Tab. 2's differences, Tab. 6/7, sanity checks, Fig. 5          03
features        Fig. 7's separation scores                                    05
cost            Tab. 5's hand count and measured ratios                       06
adaptive        the adaptive-attack verdict and its sanity checks             07
takeaways       what to expect on a profile, the three takeaways              00-07
==============  ============================================================  ========
"""
from .adaptive import adaptive_sanity_sentence, adaptive_verdict
from .benchmark import (
                        above_clean_sentence,
                        checks_sentence,
                        fig5_leaking_sentence,
                        fig5_overfitting_sentence,
                        minimal_norm_sentence,
                        purification_sentence,
                        record_verdicts,
                        table2_differences,
                        table6_sentence,
                        table7_sentence,
                        verdicts_of,
)
from .cost import hand_count_sentence, pgd_at_label, pgd_at_name, ratio_sentence
from .features import fig7_claims_sentence, fig7_sentence
from .purification import NAMES, ablation_sentence, fgsm_limitation_sentence, sweep_best, xi_sweep_sentence
from .takeaways import TAKEAWAYS, expectations, on_this_run, takeaways
from .training import curves_verdict, overfitting_verdict, paper_claim, paper_pattern, recipe_sentence, tour_verdict
from .words import (
                        SAME,
                        TOL,
                        change,
                        direction,
                        join,
                        move,
                        pct,
                        percent,
                        points,
                        radius,
                        radius_in,
                        recovered_counts,
                        recovered_sentence,
                        recovered_title,
                        tour_counts,
                        tour_title,
)

__all__ = ["NAMES", "SAME", "TAKEAWAYS", "TOL", "ablation_sentence", "adaptive_sanity_sentence", "adaptive_verdict",
           "change", "checks_sentence", "curves_verdict", "direction", "expectations", "fgsm_limitation_sentence",
           "fig5_leaking_sentence", "fig5_overfitting_sentence", "fig7_claims_sentence", "fig7_sentence",
           "hand_count_sentence", "join", "minimal_norm_sentence", "move", "on_this_run", "overfitting_verdict",
           "paper_claim", "paper_pattern", "pct", "percent", "pgd_at_label", "pgd_at_name", "points",
           "purification_sentence", "radius", "radius_in", "ratio_sentence", "recipe_sentence", "recovered_counts",
           "recovered_sentence", "recovered_title", "sweep_best", "table2_differences", "table7_sentence", "takeaways",
           "tour_counts", "tour_title", "tour_verdict", "xi_sweep_sentence", "above_clean_sentence",
           "record_verdicts", "table6_sentence", "verdicts_of"]
