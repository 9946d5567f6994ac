"""Multi-label tasks (2-3, 2-9, 3-3): set F1 between the labels named in the prediction and the answer's.

LawBench does not parse a list out of the prediction: a label counts as predicted when its text
occurs anywhere in the prediction (so "盗窃" is predicted by "盗窃罪" and by "不是盗窃"). The item's
score is the F1 of the two sets (0 when either is empty) and the item is an abstention when no
label occurs. The task score is the mean over items. The label lists are LawBench's, in its order
(``evaluation_functions/wbfl.py``, ``sjjc.py``, ``ljp_accusation.py``).
"""

from __future__ import annotations

from .errors import LawBenchInputError

# 2-3 婚姻纠纷鉴定 (wbfl.py). "婚后分局" is LawBench's spelling.
MARRIAGE_LABELS = (
    "婚后有子女", "限制行为能力子女抚养", "有夫妻共同财产", "支付抚养费", "不动产分割", "婚后分局",
    "二次起诉离婚", "按月给付抚养费", "准予离婚", "有夫妻共同债务", "婚前个人财产", "法定离婚",
    "不履行家庭义务", "存在非婚生子", "适当帮助", "不履行离婚协议", "损害赔偿", "感情不和分居满二年",
    "子女随非抚养权人生活", "婚后个人财产",
)

# 2-9 事件检测 (sjjc.py).
EVENT_LABELS = (
    "支付/给付", "欺骗", "搜查/扣押", "要求/请求", "卖出", "买入", "获利", "拘捕", "鉴定", "同意/接受",
    "供述", "联络", "帮助/救助", "租用/借用", "受伤", "伪造", "卖淫", "伤害人身", "赔偿", "归还/偿还",
)

# 3-3 罪名预测 (ljp_accusation.py): LawBench's charge list, including its oddities ("经济犯").
CHARGES = (
    "侮辱", "违法发放贷款", "失火", "票据诈骗", "帮助犯罪分子逃避处罚", "重大责任事故", "对非国家工作人员行贿",
    "非法制造、销售非法制造的注册商标标识", "非法制造、买卖、运输、邮寄、储存枪支、弹药、爆炸物", "非法获取公民个人信息",
    "扰乱无线电通讯管理秩序", "非法持有、私藏枪支、弹药", "拒不执行判决、裁定", "虚开发票", "巨额财产来源不明",
    "组织、领导、参加黑社会性质组织", "非法获取国家秘密", "以危险方法危害公共安全", "非法持有毒品",
    "聚众扰乱公共场所秩序、交通秩序", "包庇毒品犯罪分子", "滥伐林木", "伪造公司、企业、事业单位、人民团体印章",
    "非法占用农用地", "走私废物", "串通投标", "非法采伐、毁坏国家重点保护植物", "冒充军人招摇撞骗", "玩忽职守",
    "重婚", "招收公务员、学生徇私舞弊", "组织、领导传销活动", "非法猎捕、杀害珍贵、濒危野生动物", "侵犯著作权",
    "非法种植毒品原植物", "伪造、变造、买卖武装部队公文、证件、印章", "倒卖文物", "伪造、变造居民身份证", "滥用职权",
    "诽谤", "猥亵儿童", "非法转让、倒卖土地使用权", "挪用公款", "污染环境", "出售、购买、运输假币", "敲诈勒索",
    "高利转贷", "故意伤害", "持有、使用假币", "单位受贿", "强奸", "引诱、容留、介绍卖淫", "虐待",
    "生产、销售伪劣农药、兽药、化肥、种子", "妨害公务", "容留他人吸毒", "拐骗儿童", "强制猥亵、侮辱妇女",
    "非法处置查封、扣押、冻结的财产", "骗取贷款、票据承兑、金融票证", "强迫他人吸毒", "非法拘禁",
    "非法携带枪支、弹药、管制刀具、危险物品危及公共安全", "绑架", "聚众斗殴", "破坏计算机信息系统",
    "制造、贩卖、传播淫秽物品", "虐待被监管人", "贷款诈骗", "赌博", "徇私舞弊不征、少征税款",
    "盗窃、抢夺枪支、弹药、爆炸物、危险物质", "故意杀人", "介绍贿赂", "提供侵入、非法控制计算机信息系统程序、工具",
    "编造、故意传播虚假恐怖信息", "妨害作证", "强迫卖淫", "走私、贩卖、运输、制造毒品", "伪证", "拐卖妇女、儿童",
    "过失损坏武器装备、军事设施、军事通信", "破坏广播电视设施、公用电信设施", "洗钱", "职务侵占", "倒卖车票、船票",
    "抢劫", "侵占", "掩饰、隐瞒犯罪所得、犯罪所得收益", "徇私舞弊不移交刑事案件", "引诱、教唆、欺骗他人吸毒", "遗弃",
    "生产、销售伪劣产品", "放火", "非法采矿", "对单位行贿", "盗窃、抢夺枪支、弹药、爆炸物", "破坏易燃易爆设备",
    "妨害信用卡管理", "制作、复制、出版、贩卖、传播淫秽物品牟利", "金融凭证诈骗", "私分国有资产",
    "走私国家禁止进出口的货物、物品", "假冒注册商标", "危险物品肇事", "走私普通货物、物品", "经济犯", "虚报注册资本",
    "盗掘古文化遗址、古墓葬", "传播淫秽物品", "窝藏、包庇", "拒不支付劳动报酬", "行贿", "开设赌场", "传授犯罪方法",
    "协助组织卖淫", "保险诈骗", "破坏生产经营", "破坏交通设施", "打击报复证人", "非法侵入住宅", "非国家工作人员受贿",
    "过失致人重伤", "伪造、变造金融票证", "窝藏、转移、隐瞒毒品、毒赃", "帮助毁灭、伪造证据", "走私珍贵动物、珍贵动物制品",
    "生产、销售假药", "逃税", "挪用特定款物", "聚众扰乱社会秩序", "组织、强迫、引诱、容留、介绍卖淫", "合同诈骗",
    "非法生产、销售间谍专用器材", "破坏交通工具", "传播性病", "强迫交易", "隐匿、故意销毁会计凭证、会计帐簿、财务会计报告",
    "非法组织卖血", "强迫劳动", "破坏电力设备", "销售假冒注册商标的商品", "收买被拐卖的妇女、儿童", "诬告陷害", "脱逃",
    "非法经营", "徇私枉法", "信用卡诈骗", "生产、销售不符合安全标准的食品", "非法行医", "伪造货币", "动植物检疫徇私舞弊",
    "单位行贿", "破坏监管秩序", "盗窃", "盗伐林木", "重大劳动安全事故", "非法吸收公众存款",
    "非法制造、出售非法制造的发票", "非法狩猎", "组织卖淫", "非法买卖、运输、携带、持有毒品原植物种子、幼苗", "挪用资金",
    "诈骗", "伪造、变造、买卖国家机关公文、证件、印章", "持有伪造的发票", "贪污", "非法生产、买卖警用装备",
    "投放危险物质", "伪造、倒卖伪造的有价票证", "集资诈骗", "抢夺", "生产、销售有毒、有害食品", "非法捕捞水产品",
    "过失致人死亡", "非法买卖制毒物品", "虚开增值税专用发票、用于骗取出口退税、抵扣税款发票", "寻衅滋事", "危险驾驶",
    "故意毁坏财物", "招摇撞骗", "盗窃、侮辱尸体", "走私武器、弹药",
    "非法收购、运输、加工、出售国家重点保护植物、国家重点保护植物制品", "非法出售发票", "劫持船只、汽车",
    "受贿", "聚众哄抢", "交通肇事",
)


def set_f1(predicted: set, gold: set) -> float:
    """Return the F1 of two sets (LawBench's ``compute_f1_two_sets``: 0 when either set is empty)."""
    common = len(predicted & gold)
    precision = common / len(predicted) if predicted else 0.0
    recall = common / len(gold) if gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def labels_in(prediction: str, labels: tuple[str, ...]) -> set[str]:
    """Return the labels whose text occurs anywhere in the prediction."""
    return {label for label in labels if label in prediction}


def _score_labels(prediction: str, gold: set[str], labels: tuple[str, ...]) -> tuple[float, bool]:
    predicted = labels_in(prediction, labels)
    return set_f1(predicted, gold), not predicted


def score_marriage(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (F1, abstained) for 2-3 婚姻纠纷鉴定; the answer is ``类别:标签一、标签二。``."""
    if not (answer.startswith("类别:") and answer.endswith("。")):
        raise LawBenchInputError(f"answer {answer!r} is not in LawBench's form '类别:<label>、<label>。'")
    gold = answer[3:-1].split("、")
    unknown = [label for label in gold if label not in MARRIAGE_LABELS]
    if unknown:
        raise LawBenchInputError(f"answer {answer!r} names labels outside LawBench's 20: {', '.join(unknown)}")
    return _score_labels(prediction, set(gold), MARRIAGE_LABELS)


def score_events(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (F1, abstained) for 2-9 事件检测; the answer is event names joined by ``;``."""
    return _score_labels(prediction, set(answer.split(";")), EVENT_LABELS)


def score_charges(prediction: str, answer: str) -> tuple[float, bool]:
    """Return (F1, abstained) for 3-3 罪名预测; the answer is ``罪名:盗窃;诈骗``."""
    if not answer.startswith("罪名:"):
        raise LawBenchInputError(f"answer {answer!r} is not in LawBench's form '罪名:<charge>;<charge>'")
    return _score_labels(prediction, set(answer.replace("罪名:", "").split(";")), CHARGES)
