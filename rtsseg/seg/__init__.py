"""rtsseg.seg"""
