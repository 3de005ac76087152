"""rtsseg: does Barlow Twins give attention backbones semantic attention maps, and do they help segmentation?

Subpackages, one idea each:
    rtsseg.data       data sets (CamVid, Tiny-ImageNet-200, COCO-Stuff 164k/27, image+mask folders)
    rtsseg.ssl        Barlow Twins: loss, projector, LARS, batched augmentations, training loop
    rtsseg.models     backbone registry (ResNet-50, BoTNet-50, Swin, ViT/DINO, small CPU variants)
    rtsseg.attention  attention capture with hooks, DINO-style maps and masks, Jaccard
    rtsseg.seg        segmentation heads and mIoU
    rtsseg.analysis   embeddings, k-NN, linear probe, t-SNE
"""

__version__ = "0.1.0"
