Bwj
locationweights.binj
offset12abcp