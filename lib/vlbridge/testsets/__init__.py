"""The papers' own test sets, for the paper profiles: FROMAGe's VIST and VisDial (fromage), ESPER's
and ClipCap's COCO Karpathy test split (karpathy), ILLUME's VQA-X test split (vqax). Each runs the
trained models on the real files through vlbridge.data's loaders, scores them with vlbridge.eval's
metrics and prints the papers' numbers beside ours, labelled as theirs. The microworld chapters never
call them."""
