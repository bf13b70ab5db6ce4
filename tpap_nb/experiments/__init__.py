"""One module per paper artefact the notebooks reproduce; each uses the core (`tpap_nb.*`) and no
core module imports them back.

===================  ===================================================  ==========
module               artefact                                             notebook
===================  ===================================================  ==========
tables               Tab. 2, 6, 7 from the record store; xi sweep,        02, 03
                     Sec. 4.3's FGSM limitation; attack-table checks
table3               Tab. 3: Caltech-101 with an ImageNet ResNet-18       03
cost                 Tab. 5: measured cost and the timer                  06
bench                the speed bench (make bench)                         -
fig5                 Fig. 5: training eps, batch size, learning rate      03
gradcam              Fig. 6: Grad-CAM maps and the Sec. 4.5 numbers       04
tsne                 Fig. 7: t-SNE of features, cluster separation        05
adaptive             beyond the paper: adaptive attacks on the pipeline   07
mechanism            Fig. 3a measured, and a 2-D toy of Algorithm 1       02
precision            attacks in float32 and bf16, image by image          -
seeds                seed checks, xi chosen on a validation split         -
gpu_check            the one-GPU check of the kit's claims                -
===================  ===================================================  ==========

Import the module you need (`from tpap_nb.experiments import tables`); this package imports none
of them itself, so using one costs only what it needs. Their results in words: `tpap_nb.report`.
"""
