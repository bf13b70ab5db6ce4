"""One module per paper artefact the notebooks reproduce; each uses the core (`tpap_nb.*`) and no
core module imports them back.

=============  ===========================================================  ==========
module         artefact                                                     notebook
=============  ===========================================================  ==========
tables         Tab. 2, 6, 7 from the record store; xi sweep, Sec. 4.3's     02, 03
               FGSM limitation; the sanity checks of an attack table
table3         Tab. 3: Caltech-101 with an ImageNet ResNet-18               03
cost           Tab. 5: measured cost, and the speed bench (`make bench`)    06
fig5           Fig. 5: training eps and batch-size sweep                    03
gradcam        Fig. 6: Grad-CAM maps and the numbers that test Sec. 4.5     04
tsne           Fig. 7: t-SNE of features and cluster separation scores      05
adaptive       beyond the paper: adaptive attacks on the whole pipeline     07
seeds          seed checks (how the `quick` profile was chosen)             -
gpu_check      the one-GPU check of the kit's claims (`make gpu-check`)     -
=============  ===========================================================  ==========

Import the module you need (`from tpap_nb.experiments import tables`); this package imports none
of them itself, so using one costs only what it needs.
"""
