"""PI-CAI evaluation (patient AUROC, lesion AP, their mean) with paired bootstrap CIs and tests."""
